package aelocal

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The mail page: the messages the app sent (kept, never delivered), newest
// first, in pages, and one message whole. Bodies, the HTML one included,
// are shown as text: html/template escapes them, and the page's
// Content-Security-Policy would stop any script anyway. Attachments are
// listed by name and size; the console does not serve their contents,
// which could be anything, from its own origin.

// mailPerPage is how many messages one page lists.
const mailPerPage = 20

// mailExcerpt is how much of each body the list shows; the message's own
// page shows up to mailMaxShown.
const (
	mailExcerpt  = 2000
	mailMaxShown = 1 << 20
)

type mailView struct {
	Seq              uint64
	At               time.Time
	ToAdmins         bool
	Sender, ReplyTo  string
	To, Cc, Bcc      []string
	Subject          string
	Body, HTMLBody   string
	BodyCut, HTMLCut int // bytes left out of each body
	Attachments      []attachmentView
	Headers          []headerView
	HasBody, HasHTML bool
	AttachmentsBytes int
}

type attachmentView struct {
	Name, ContentID string
	Size            int
}

type mailPage struct {
	Mails     []mailView
	Offset    int
	Total     int
	Kept      int  // the most messages kept
	KeptBytes int  // and the most bytes
	Message   bool // one message's page
}

// Prev is the offset of the previous page, -1 on the first.
func (p *mailPage) Prev() int {
	if p.Offset == 0 {
		return -1
	}
	return max(0, p.Offset-mailPerPage)
}

// End is the 1-based number of the last message shown.
func (p *mailPage) End() int { return p.Offset + len(p.Mails) }

// More reports whether older messages follow this page.
func (p *mailPage) More() bool { return p.End() < p.Total }

// Query is the URL of the listing at offset.
func (p *mailPage) Query(offset int) string {
	if offset <= 0 {
		return "/mail"
	}
	return "/mail?offset=" + strconv.Itoa(offset)
}

func (c *console) mailRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /mail", c.serveMail)
	mux.HandleFunc("GET /mail/message", c.serveMailMessage)
	c.post(mux, "/mail/clear", c.postMailClear)
}

func (c *console) serveMail(w http.ResponseWriter, r *http.Request) {
	d := &mailPage{Kept: mailMaxKept, KeptBytes: mailMaxKeptBytes}
	if off, err := strconv.Atoi(r.URL.Query().Get("offset")); err == nil && off > 0 {
		d.Offset = off
	}
	mails, total := c.s.latestMails(d.Offset, mailPerPage)
	d.Total = total
	for _, m := range mails {
		d.Mails = append(d.Mails, viewMail(m, mailExcerpt))
	}
	c.render(w, r, http.StatusOK, "mail", &consolePage{Title: "Mail", Section: "Mail", Data: d})
}

func (c *console) serveMailMessage(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
	m, ok := c.s.mailBySeq(seq)
	if err != nil || !ok {
		c.fail(w, r, http.StatusNotFound, errors.New("no such message: it was never sent, or the messages kept were cleared"))
		return
	}
	d := &mailPage{Mails: []mailView{viewMail(m, mailMaxShown)}, Message: true, Total: 1}
	c.render(w, r, http.StatusOK, "mail", &consolePage{Title: "Mail: " + m.msg.Subject, Section: "Mail", Data: d})
}

func (c *console) postMailClear(w http.ResponseWriter, r *http.Request) {
	c.s.clearMail()
	redirect(w, r, "/mail", nil, "mailcleared")
}

// viewMail prepares a message for the page, each body cut to limit bytes.
func viewMail(m sentMail, limit int) mailView {
	msg := m.msg
	v := mailView{
		Seq: m.seq, At: m.at, ToAdmins: m.toAdmins,
		Sender: msg.Sender, ReplyTo: msg.ReplyTo, To: msg.To, Cc: msg.Cc, Bcc: msg.Bcc,
		Subject: msg.Subject, HasBody: msg.Body != "", HasHTML: msg.HTMLBody != "",
	}
	v.Body, v.BodyCut = cutText(msg.Body, limit)
	v.HTMLBody, v.HTMLCut = cutText(msg.HTMLBody, limit)
	for _, a := range msg.Attachments {
		v.Attachments = append(v.Attachments, attachmentView{a.Name, a.ContentID, len(a.Data)})
		v.AttachmentsBytes += len(a.Data)
	}
	names := make([]string, 0, len(msg.Headers))
	for k := range msg.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, val := range msg.Headers[k] {
			v.Headers = append(v.Headers, headerView{k, val})
		}
	}
	return v
}

// cutText cuts s to at most limit bytes, at a character boundary, and says
// how many bytes it left out.
func cutText(s string, limit int) (string, int) {
	if len(s) <= limit {
		return s, 0
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], len(s) - cut
}

// fmtSize shows a byte count as people read it, in the binary units the
// README and App Engine's documentation use for limits ("1 MiB",
// "256 MiB"): "812 B", "12.1 KiB", "256 MiB".
func fmtSize(n int) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + units[u]
}
