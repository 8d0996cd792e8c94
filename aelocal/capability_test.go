package aelocal

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/capability"
	"google.golang.org/protobuf/encoding/protowire"
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

// TestCapabilityConfig: IsEnabled lists each capability asked about with
// its own status in the response's config field, as the SDK's stub does.
// The appengine/v2 client's proto has no such field, so the test reads it
// from the fields the client kept as unknown.
func TestCapabilityConfig(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		req, _ := newMsg("appengine.v2.IsEnabledRequest")
		req.Set("package", "datastore_v3")
		req.Append("capability", "write")
		req.Append("capability", "nosuch")
		resp, _ := newMsg("appengine.v2.IsEnabledResponse")
		if err := appengine.APICall(ctx, "capability_service", "IsEnabled", protoV1(req), protoV1(resp)); err != nil {
			t.Fatal(err)
		}
		got, err := decodeCapabilityConfigs(resp.m.GetUnknown())
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"datastore_v3/write=1", "datastore_v3/nosuch=4"} // ENABLED, UNKNOWN
		if !slices.Equal(got, want) {
			t.Fatalf("config = %q, want %q", got, want)
		}
		if st := resp.Int("summary_status"); st != capUnknown {
			t.Fatalf("summary_status = %d, want UNKNOWN", st)
		}
	})
}

// decodeCapabilityConfigs reads the config elements (field 3) of an
// encoded IsEnabledResponse as "package/capability=status".
func decodeCapabilityConfigs(b []byte) ([]string, error) {
	var out []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num != 3 || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		cfg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		var pkg, capability string
		var status uint64
		for len(cfg) > 0 {
			num, typ, n := protowire.ConsumeTag(cfg)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			cfg = cfg[n:]
			if typ == protowire.VarintType && num == 3 {
				v, n := protowire.ConsumeVarint(cfg)
				if n < 0 {
					return nil, protowire.ParseError(n)
				}
				status, cfg = v, cfg[n:]
				continue
			}
			v, n := protowire.ConsumeString(cfg)
			if n < 0 || typ != protowire.BytesType {
				return nil, fmt.Errorf("unexpected field %d of CapabilityConfig", num)
			}
			cfg = cfg[n:]
			switch num {
			case 1:
				pkg = v
			case 2:
				capability = v
			}
		}
		out = append(out, fmt.Sprintf("%s/%s=%d", pkg, capability, status))
	}
	return out, nil
}
