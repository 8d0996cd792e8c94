package cloud

import (
	"context"
	"errors"

	"cloud.google.com/go/datastore"
	"github.com/icza/gaesession/v2/internal/tier"
	"google.golang.org/appengine/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The session core reads the bundled services' errors (internal/tier): a
// missing entity is tier.ErrNoSuchEntity, a batch's errors an
// appengine.MultiError, and it retries what another attempt may fix. So
// the Cloud Datastore tier hands it the client's errors in those terms.

// grpcError is an error of the Cloud Datastore API, with its status code
// told to the core: permanent codes are not retried, nor are those the
// client has retried already, and a deadline is a timeout, as App
// Engine's, which is not retried either.
type grpcError struct {
	err     error
	code    codes.Code
	retried bool // by the client
}

// The codes the Cloud client's own retry policy (its gRPC service config,
// from googleapis' datastore_grpc_service_config.json) retries, with
// backoff, for each kind of call. The core's attempts on top of them would
// multiply them: a Lookup that keeps failing would be sent 15 times
// (TestCloudClientRetriesNotMultiplied).
var (
	lookupRetried = map[codes.Code]bool{ // Lookup and RunQuery
		codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Internal: true, codes.ResourceExhausted: true,
	}
	commitRetried = map[codes.Code]bool{codes.Unavailable: true} // Commit and the others
)

func (e *grpcError) Error() string { return e.err.Error() }
func (e *grpcError) Unwrap() error { return e.err }

// Permanent tells the core not to send the request again: it cannot
// succeed (the request itself is wrong, an entity too large, say, or not
// allowed), or the client has retried it already.
func (e *grpcError) Permanent() bool {
	if e.retried {
		return true
	}
	switch e.code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied,
		codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange, codes.NotFound, codes.AlreadyExists:
		return true
	}
	return false
}

// IsTimeout makes appengine.IsTimeoutError recognise the API's deadline.
func (e *grpcError) IsTimeout() bool { return e.code == codes.DeadlineExceeded }

// coreError translates an error of the Cloud client for the core; retried
// are the codes the client retries for the call that failed.
func coreError(err error, retried map[codes.Code]bool) error {
	if err == nil {
		return nil
	}
	var me datastore.MultiError
	if errors.As(err, &me) {
		out := make(appengine.MultiError, len(me))
		for i, e := range me {
			out[i] = coreError(e, retried)
		}
		return out
	}
	var already *grpcError
	switch {
	case errors.Is(err, datastore.ErrNoSuchEntity):
		return tier.ErrNoSuchEntity
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As(err, &already):
		return err
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK && s.Code() != codes.Unknown {
		return &grpcError{err: err, code: s.Code(), retried: retried[s.Code()]}
	}
	return err
}
