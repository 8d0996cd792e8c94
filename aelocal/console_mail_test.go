package aelocal

import (
	"html"
	"net/http"
	netmail "net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/mail"
)

func TestConsoleMail(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	_, page := getPage(t, s, "/mail")
	// The bound in the same unit as the README's "at most 256 MiB".
	mustContain(t, page, "No mail sent yet.", "fewer if they pass 256 MiB")
	if strings.Contains(page, "Clear all") {
		t.Fatal("an empty list offers to clear it")
	}

	send := func(m *mail.Message) {
		t.Helper()
		if err := mail.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	send(&mail.Message{Sender: "App <noreply@example.com>", To: []string{"juliet@example.org"}, Subject: "First", Body: "one"})
	send(&mail.Message{
		Sender: "noreply@example.com", ReplyTo: "help@example.com",
		To: []string{"Juliet <juliet@example.org>"}, Cc: []string{"nurse@example.org"}, Bcc: []string{"friar@example.org"},
		Subject:  "Your <b>invoice</b>",
		Body:     "Dear Juliet,\nthe invoice is attached.",
		HTMLBody: `<p onclick="steal()">Dear Juliet,</p><script>alert(1)</script><img src="https://tracker.example/x.png">`,
		Attachments: []mail.Attachment{
			{Name: "invoice.pdf", Data: make([]byte, 12345)},
			{Name: "logo.png", Data: []byte("png"), ContentID: "<logo>"},
		},
		Headers: netmail.Header{"List-Id": {"invoices"}},
	})
	if err := mail.SendToAdmins(ctx, &mail.Message{Sender: "noreply@example.com", Subject: "Disk full", Body: strings.Repeat("é", 3000)}); err != nil {
		t.Fatal(err)
	}

	_, page = getPage(t, s, "/mail")
	mustContain(t, page, "Messages 1–3 of 3.",
		"Your &lt;b&gt;invoice&lt;/b&gt;", "Juliet &lt;juliet@example.org&gt;", "nurse@example.org", "friar@example.org", "help@example.com",
		"List-Id", "invoices",
		`<span class="name">invoice.pdf</span> <span class="note">12.1 KiB (12345 bytes)`, `<span class="name">logo.png</span> <span class="note">3 B, Content-ID &lt;logo&gt;`,
		"&lt;script&gt;alert(1)&lt;/script&gt;", "(its source, shown as text)",
		"with <code>SendToAdmins</code>", "the app's administrators")
	// Nothing of the HTML body is live on the page.
	for _, bad := range []string{"<script>alert", `<img src="https://tracker`, "onclick=\"steal"} {
		if strings.Contains(page, bad) {
			t.Fatalf("the page carries %q", bad)
		}
	}
	// Newest first.
	if i, j, k := strings.Index(page, "Disk full"), strings.Index(page, "invoice"), strings.Index(page, "First"); !(i < j && j < k) {
		t.Fatalf("messages out of order (%d, %d, %d)", i, j, k)
	}
	// A long body is cut in the list, on a character, and whole on its own page.
	mustContain(t, page, "… 4000 more bytes", "The whole message")
	link := regexp.MustCompile(`<h2><a href="(/mail/message\?id=\d+)">Disk full</a>`).FindStringSubmatch(page)
	if link == nil {
		t.Fatal("no link to the message")
	}
	_, one := getPage(t, s, html.UnescapeString(link[1]))
	mustContain(t, one, "<h1>Disk full</h1>", strings.Repeat("é", 3000))
	if strings.Contains(one, "more bytes") || strings.Contains(one, "Clear all") {
		t.Fatal("the message's page cuts its body or offers to clear the list")
	}
	for _, bad := range []string{"?id=999", "?id=x", ""} {
		if code, _ := getPage(t, s, "/mail/message"+bad); code != http.StatusNotFound {
			t.Fatalf("message %q: %d", bad, code)
		}
	}

	// Pages of twenty.
	for i := range 45 {
		send(&mail.Message{Sender: "noreply@example.com", To: []string{"x@example.org"}, Subject: "Bulk " + strconv.Itoa(i), Body: "b"})
	}
	_, page = getPage(t, s, "/mail")
	mustContain(t, page, "Messages 1–20 of 48.", "Bulk 44", "Bulk 25")
	if strings.Contains(page, ">Bulk 24<") {
		t.Fatal("the first page goes on past twenty")
	}
	_, page = getPage(t, s, "/mail?offset=40")
	mustContain(t, page, "Messages 41–48 of 48.", ">First<", "« Newest")

	// Clear: a POST from the console's own form only.
	if resp := postForm(t, s, "/mail/clear", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("clear without a token: %d", resp.StatusCode)
	}
	if code, _ := getPage(t, s, "/mail/clear"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /mail/clear: %d", code)
	}
	resp := postForm(t, s, "/mail/clear", url.Values{"csrf": {tokenFor(t, page, "/mail/clear")}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/mail?done=mailcleared" {
		t.Fatalf("clear: %d to %q", resp.StatusCode, loc)
	}
	if len(s.Mail()) != 0 {
		t.Fatal("messages kept after clear")
	}
	_, page = getPage(t, s, "/mail?done=mailcleared")
	mustContain(t, page, "Every message kept was removed.", "No mail sent yet.")
}

// TestFmtSize: sizes in the binary units App Engine's limits are given in.
func TestFmtSize(t *testing.T) {
	for n, want := range map[int]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 3000: "2.9 KiB", 12345: "12.1 KiB", 1 << 20: "1 MiB", 256 << 20: "256 MiB", 31<<20 + 512<<10: "31.5 MiB"} {
		if got := fmtSize(n); got != want {
			t.Errorf("fmtSize(%d) = %q, want %q", n, got, want)
		}
	}
}
