package main

import (
	"io"
	"net/http"
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

// TestBannerCloudDatastore: the banner gives the Cloud Datastore API's
// export line, and its port answers as Google's emulator does; POST
// /shutdown there ends the process.
func TestBannerCloudDatastore(t *testing.T) {
	p := startProc(t)
	p.waitOutput("aelocal: console at")
	out := p.out.String()
	i := strings.Index(out, "export DATASTORE_EMULATOR_HOST=")
	if i < 0 {
		t.Fatalf("no DATASTORE_EMULATOR_HOST line:\n%s", out)
	}
	line := strings.SplitN(out[i:], "\n", 2)[0]
	f := strings.Fields(line)
	if len(f) != 3 || f[2] != "DATASTORE_PROJECT_ID=aelocal" {
		t.Fatalf("export line %q", line)
	}
	host := strings.TrimPrefix(f[1], "DATASTORE_EMULATOR_HOST=")
	resp, err := http.Get("http://" + host + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "Ok" {
		t.Fatalf("GET /: %q", body)
	}
	if resp, err := http.Post("http://"+host+"/shutdown", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /shutdown: %v", err)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d after /shutdown", code)
	}
}
