package aelocal

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// Error texts name what was wrong, never a key name: key names can be
// secrets (gaesession uses session IDs), and error texts end up in logs.
func TestDatastoreErrorsDoNotQuoteKeyNames(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		const secret = "c2VjcmV0LXNlc3Npb24taWQ"
		type big struct{ B []byte }
		type long struct{ S string }
		for _, c := range []struct {
			what string
			put  func() error
		}{
			{"too big", func() error {
				_, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", secret, 0, nil), &big{B: make([]byte, maxEntityBytes)})
				return err
			}},
			{"indexed value too long", func() error {
				_, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", secret, 0, nil), &long{S: strings.Repeat("s", 1501)})
				return err
			}},
			{"reserved name", func() error {
				parent := datastore.NewKey(ctx, "K", secret, 0, nil)
				_, err := datastore.Put(ctx, datastore.NewKey(ctx, "K", "__x__", 0, parent), &long{})
				return err
			}},
		} {
			err := c.put()
			wantAPIError(t, err, "BAD_REQUEST", "")
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error quotes the key name: %v", c.what, err)
			}
		}
	})
}
