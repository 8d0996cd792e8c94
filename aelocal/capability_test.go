package aelocal

import (
	"context"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/capability"
)

func TestCapability(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		if !capability.Enabled(ctx, "datastore_v3", "write") {
			t.Fatal("datastore writes are not enabled")
		}
		status := func(pkg string, caps ...string) int64 {
			req, _ := newMsg("appengine.v2.IsEnabledRequest")
			req.Set("package", pkg)
			for _, c := range caps {
				req.Append("capability", c)
			}
			resp, _ := newMsg("appengine.v2.IsEnabledResponse")
			if err := appengine.APICall(ctx, "capability_service", "IsEnabled", protoV1(req), protoV1(resp)); err != nil {
				t.Fatal(err)
			}
			return resp.Int("summary_status")
		}
		if got := status("memcache", "*"); got != capEnabled {
			t.Fatalf("memcache: %d, want ENABLED", got)
		}
		if got := status("datastore_v3", "write", "nosuch"); got != capUnknown {
			t.Fatalf("an unknown capability: %d, want UNKNOWN", got)
		}
		// An injected failure makes capability.Enabled report false, as a
		// failing production call does.
		s.FailNext("capability_service", "IsEnabled", 1)
		if capability.Enabled(ctx, "datastore_v3", "write") {
			t.Fatal("Enabled after a failed call")
		}
	})
}
