module github.com/icza/gaesession/v2

go 1.23.0

require (
	github.com/golang/protobuf v1.5.0
	github.com/google/btree v1.1.3
	github.com/icza/session v1.3.0
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5
	google.golang.org/appengine/v2 v2.0.6
	google.golang.org/protobuf v1.30.0
)

require (
	golang.org/x/net v0.0.0-20220722155237-a158d28d115b // indirect
	golang.org/x/text v0.3.8 // indirect
)
