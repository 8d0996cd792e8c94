module github.com/icza/gaesession/v2

go 1.23.0

require (
	github.com/golang/protobuf v1.5.0
	google.golang.org/appengine/v2 v2.0.6
	google.golang.org/protobuf v1.30.0
)
