module github.com/icza/gaesession/v2/v1test

go 1.23.0

require (
	github.com/icza/gaesession/v2 v2.0.0
	google.golang.org/appengine v1.6.8
)

require (
	github.com/golang/protobuf v1.5.2 // indirect
	github.com/google/btree v1.1.3 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/net v0.0.0-20220722155237-a158d28d115b // indirect
	golang.org/x/text v0.3.8 // indirect
	google.golang.org/appengine/v2 v2.0.6 // indirect
	google.golang.org/protobuf v1.30.0 // indirect
)

replace github.com/icza/gaesession/v2 => ../
