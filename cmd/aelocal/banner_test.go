package main

import (
	"strings"
	"testing"
)

// TestBannerNamesTheVariables: the first lines say what the app needs, as
// an export line, and name the failure an app started without
// GAE_APPLICATION shows, which never reaches aelocal.
func TestBannerNamesTheVariables(t *testing.T) {
	p := startProc(t)
	p.waitOutput("aelocal: console at")
	out := p.out.String()
	for _, want := range []string{
		"export API_HOST=127.0.0.1 API_PORT=" + p.port + " GAE_APPLICATION=dev~aelocal\n",
		`aelocal: run the app with all three; without GAE_APPLICATION it fails with "Metadata fetch failed for 'instance/attributes/gae_project'"` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the banner lacks %q:\n%s", want, out)
		}
	}
}
