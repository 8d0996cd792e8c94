module github.com/icza/gaesession/v2/cloud

go 1.26.0

// The store and aelocal of this checkout. A published version of this
// module names a released version of github.com/icza/gaesession/v2 instead.
replace github.com/icza/gaesession/v2 => ../

require github.com/icza/gaesession/v2 v2.0.0-00010101000000-000000000000

require (
	github.com/golang/protobuf v1.5.0 // indirect
	github.com/icza/session v1.3.0 // indirect
	google.golang.org/appengine/v2 v2.0.6 // indirect
	google.golang.org/protobuf v1.30.0 // indirect
)
