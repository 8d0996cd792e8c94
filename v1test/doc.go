// Package v1test holds tests of aelocal with the appengine v1 client
// (google.golang.org/appengine): aetest with cmd/aelocal as its
// dev_appserver, and in-process routing with Server.Route and Server.Call.
//
// It is a module of its own so that the library's go.mod does not carry
// appengine v1. go.mod tests v1.6.8; go.v167.mod tests v1.6.7, whose aetest
// names its program in APPENGINE_DEV_APPSERVER_BINARY and posts API calls
// to the printed URL as it is:
//
//	go test ./...
//	go test -modfile=go.v167.mod ./...
//
// The repository's own `go test ./...` runs both (see
// cmd/aelocal/v1_test.go).
package v1test
