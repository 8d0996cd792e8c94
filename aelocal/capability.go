package aelocal

import "google.golang.org/protobuf/encoding/protowire"

// Capability statuses (IsEnabledResponse.SummaryStatus).
const (
	capEnabled = 1
	capUnknown = 5
)

// Statuses of one capability (CapabilityConfig.Status), a different enum
// from the summary's.
const (
	capConfigEnabled = 1
	capConfigUnknown = 4
)

// capabilities are the ones the SDK stub knows, all enabled locally.
var capabilities = map[string]map[string]bool{
	"blobstore":    {"*": true},
	"datastore_v3": {"*": true, "write": true},
	"images":       {"*": true},
	"mail":         {"*": true},
	"memcache":     {"*": true},
	"taskqueue":    {"*": true},
	"urlfetch":     {"*": true},
	"xmpp":         {"*": true},
}

func init() {
	register("capability_service", "IsEnabled", "appengine.v2.IsEnabledRequest", "appengine.v2.IsEnabledResponse", capIsEnabled)
}

// capIsEnabled answers ENABLED for every capability the stub knows and
// UNKNOWN when one asked about is not among them. Like the SDK's stub it
// also lists each capability asked about, with its own status, in the
// response's config field.
func capIsEnabled(s *Server, in, out pmsg) error {
	status := int64(capEnabled)
	pkg := in.Str("package")
	known := capabilities[pkg]
	var configs []byte
	for _, c := range in.BytesList("capability") {
		cs := uint64(capConfigEnabled)
		if !known[string(c)] {
			status, cs = capUnknown, capConfigUnknown
		}
		configs = appendCapabilityConfig(configs, pkg, string(c), cs)
	}
	out.Set("summary_status", status)
	if len(configs) > 0 {
		out.m.SetUnknown(configs)
	}
	return nil
}

// IsEnabledResponse field 3 (repeated CapabilityConfig config) and the
// fields of CapabilityConfig (package 1, capability 2, status 3), as the
// SDK's capability_service.proto and capabilities.proto number them.
const (
	capRespConfigField   = 3
	capConfigPackage     = 1
	capConfigCapability  = 2
	capConfigStatusField = 3
)

// appendCapabilityConfig appends one config element of an
// IsEnabledResponse, encoded. The appengine/v2 client's copy of the proto
// lacks the config field, so aelocal has no descriptor to set it through;
// it goes out as raw field bytes, which the client keeps as unknown fields
// and which a client built from the SDK's proto decodes as the stub's
// answer.
func appendCapabilityConfig(dst []byte, pkg, capability string, status uint64) []byte {
	var cfg []byte
	cfg = protowire.AppendTag(cfg, capConfigPackage, protowire.BytesType)
	cfg = protowire.AppendString(cfg, pkg)
	cfg = protowire.AppendTag(cfg, capConfigCapability, protowire.BytesType)
	cfg = protowire.AppendString(cfg, capability)
	cfg = protowire.AppendTag(cfg, capConfigStatusField, protowire.VarintType)
	cfg = protowire.AppendVarint(cfg, status)
	dst = protowire.AppendTag(dst, capRespConfigField, protowire.BytesType)
	return protowire.AppendBytes(dst, cfg)
}
