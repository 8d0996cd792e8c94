module github.com/icza/gaesession/v2/cloud

go 1.26.0

// The store and aelocal of this checkout. A published version of this
// module names a released version of github.com/icza/gaesession/v2 instead.
replace github.com/icza/gaesession/v2 => ../

require (
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/redis/go-redis/v9 v9.23.0
	google.golang.org/appengine/v2 v2.0.6
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/golang/protobuf v1.5.0 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.30.0 // indirect
)
