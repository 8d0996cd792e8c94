package aelocal

// Capability statuses (IsEnabledResponse.SummaryStatus).
const (
	capEnabled = 1
	capUnknown = 5
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
// UNKNOWN when one asked about is not among them.
func capIsEnabled(s *Server, in, out pmsg) error {
	status := int64(capEnabled)
	pkg := capabilities[in.Str("package")]
	for _, c := range in.BytesList("capability") {
		if !pkg[string(c)] {
			status = capUnknown
		}
	}
	out.Set("summary_status", status)
	return nil
}
