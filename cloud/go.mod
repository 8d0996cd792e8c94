module github.com/icza/gaesession/v2/cloud

go 1.26.0

// The store and aelocal of this checkout. A published version of this
// module names a released version of github.com/icza/gaesession/v2 instead.
replace github.com/icza/gaesession/v2 => ../

require (
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/icza/gaesession/v2 v2.0.0-00010101000000-000000000000
	github.com/icza/session v1.3.0
	github.com/redis/go-redis/v9 v9.23.0
	google.golang.org/appengine/v2 v2.0.6
)

require (
	cloud.google.com/go/datastore v1.20.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/golang/protobuf v1.5.4 // indirect
	github.com/google/btree v1.1.3 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/net v0.41.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.26.0 // indirect
	google.golang.org/genproto v0.0.0-20241015192408-796eee8c2d53 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20250707201910-8d1bb00bc6a7 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250707201910-8d1bb00bc6a7 // indirect
	google.golang.org/grpc v1.75.0 // indirect
	google.golang.org/protobuf v1.36.6 // indirect
)
