package aelocal

import (
	"context"
	netmail "net/mail"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/mail"
)

func TestMailSend(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		msg := &mail.Message{
			Sender:   "App <noreply@example.com>",
			ReplyTo:  "help@example.com",
			To:       []string{"Juliet <juliet@example.org>"},
			Cc:       []string{"nurse@example.org"},
			Bcc:      []string{"friar@example.org"},
			Subject:  "See you tonight",
			Body:     "Hark",
			HTMLBody: "<p>Hark</p>",
			Attachments: []mail.Attachment{
				{Name: "plan.pdf", Data: []byte("%PDF"), ContentID: "<plan>"},
				{Name: "Notes.TXT", Data: []byte("notes")},
			},
			Headers: netmail.Header{"In-Reply-To": {"<m1@example.com>"}, "List-Id": {"list"}},
		}
		if err := mail.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		admin := &mail.Message{Sender: "noreply@example.com", Subject: "Alert", Body: "disk full"}
		if err := mail.SendToAdmins(ctx, admin); err != nil {
			t.Fatal(err)
		}
		got := s.Mail()
		if len(got) != 2 {
			t.Fatalf("kept %d messages, want 2", len(got))
		}
		if !reflect.DeepEqual(got[0], msg) {
			t.Fatalf("kept\n%+v\nwant\n%+v", got[0], msg)
		}
		if got[1].Subject != "Alert" || len(got[1].To) != 0 {
			t.Fatalf("admin message %+v", got[1])
		}
		sent, n := s.latestMails(0, 10)
		if n != 2 || len(sent) != 2 || !sent[0].toAdmins || sent[1].toAdmins || sent[1].at.IsZero() || sent[0].seq != sent[1].seq+1 {
			t.Fatalf("sent records, newest first: %+v", sent)
		}
		if m, ok := s.mailBySeq(sent[1].seq); !ok || !reflect.DeepEqual(m.msg, msg) {
			t.Fatalf("message %d: %+v, %v", sent[1].seq, m.msg, ok)
		}
		if _, ok := s.mailBySeq(sent[0].seq + 1); ok {
			t.Fatal("a message that was never sent was found")
		}
		// Mail returns copies.
		got[0].Attachments[0].Data[0] = 'X'
		got[0].To[0] = "x"
		if again := s.Mail()[0]; string(again.Attachments[0].Data) != "%PDF" || again.To[0] != msg.To[0] {
			t.Fatal("changing a returned message changed the kept one")
		}
		s.clearMail()
		if len(s.Mail()) != 0 {
			t.Fatal("clearMail kept messages")
		}
	})
}

func TestMailChecks(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		ok := func() *mail.Message {
			return &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: "s", Body: "b"}
		}
		for _, c := range []struct {
			name   string
			change func(m *mail.Message)
			code   string
			detail string
		}{
			{"no sender", func(m *mail.Message) { m.Sender = "" }, "BAD_REQUEST", "missing sender"},
			{"bad sender", func(m *mail.Message) { m.Sender = "not an address" }, "BAD_REQUEST", "invalid sender"},
			{"bad reply-to", func(m *mail.Message) { m.ReplyTo = "nope" }, "BAD_REQUEST", "reply-to"},
			{"no recipient", func(m *mail.Message) { m.To = nil }, "BAD_REQUEST", "missing recipients"},
			{"bad recipient", func(m *mail.Message) { m.Cc = []string{"x"} }, "BAD_REQUEST", "invalid Cc address"},
			{"no body", func(m *mail.Message) { m.Body = "" }, "BAD_REQUEST", "missing body"},
			{"blocked", func(m *mail.Message) { m.Attachments = []mail.Attachment{{Name: "run.EXE", Data: []byte("x")}} }, "INVALID_ATTACHMENT_TYPE", "run.EXE"},
			{"hidden", func(m *mail.Message) { m.Attachments = []mail.Attachment{{Name: ".profile", Data: []byte("x")}} }, "INVALID_ATTACHMENT_TYPE", "hidden"},
			{"no extension", func(m *mail.Message) { m.Attachments = []mail.Attachment{{Name: "README", Data: []byte("x")}} }, "INVALID_ATTACHMENT_TYPE", "extension"},
			{"content id", func(m *mail.Message) {
				m.Attachments = []mail.Attachment{{Name: "a.png", Data: []byte("x"), ContentID: "img"}}
			}, "INVALID_CONTENT_ID", "<id>"},
			{"header", func(m *mail.Message) { m.Headers = netmail.Header{"X-Mailer": {"me"}} }, "INVALID_HEADER_NAME", "X-Mailer"},
			{"too big", func(m *mail.Message) {
				m.Attachments = []mail.Attachment{{Name: "big.bin", Data: make([]byte, 32<<20)}}
			}, "BAD_REQUEST", "the limit"},
		} {
			m := ok()
			c.change(m)
			wantAPIError(t, mail.Send(ctx, m), c.code, c.detail)
		}
		// SendToAdmins needs no recipients, but the other checks apply.
		m := ok()
		m.To = nil
		if err := mail.SendToAdmins(ctx, m); err != nil {
			t.Fatal(err)
		}
		m.Body = ""
		wantAPIError(t, mail.SendToAdmins(ctx, m), "BAD_REQUEST", "missing body")
		if n := len(s.Mail()); n != 1 {
			t.Fatalf("kept %d messages, want only the one that passed", n)
		}
	})
}

func TestMailKeepsALimitedNumber(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	for i := 0; i < 3; i++ {
		mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: strings.Repeat("s", i), Body: "b"})
	}
	// Pretend the limit was reached: the oldest message goes first.
	s.mail.mu.Lock()
	for len(s.mail.sent) < mailMaxKept {
		s.mail.sent = append(s.mail.sent, s.mail.sent[len(s.mail.sent)-1])
	}
	s.mail.mu.Unlock()
	mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: "newest", Body: "b"})
	got := s.Mail()
	if len(got) != mailMaxKept || got[0].Subject != "s" || got[len(got)-1].Subject != "newest" {
		t.Fatalf("kept %d, first %q, last %q", len(got), got[0].Subject, got[len(got)-1].Subject)
	}
}

// TestMailKeepsLimitedBytes: past the byte bound the oldest messages go,
// so that big attachments cannot grow the server without end; the newest
// stays whatever its size.
func TestMailKeepsLimitedBytes(t *testing.T) {
	s := newTestServer(t)
	s.mail.mu.Lock()
	s.mail.maxBytes = 5 << 20
	s.mail.mu.Unlock()
	ctx := middlewareContext(t, s)
	send := func(subject string, size int) {
		t.Helper()
		err := mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: subject, Body: "b",
			Attachments: []mail.Attachment{{Name: "big.bin", Data: make([]byte, size)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 8 {
		send(strconv.Itoa(i), 1<<20)
	}
	var subjects []string
	for _, m := range s.Mail() {
		subjects = append(subjects, m.Subject)
	}
	if want := []string{"4", "5", "6", "7"}; !reflect.DeepEqual(subjects, want) {
		t.Fatalf("kept %v, want %v", subjects, want)
	}
	send("huge", 6<<20)
	if got := s.Mail(); len(got) != 1 || got[0].Subject != "huge" {
		t.Fatalf("after a message over the bound, kept %d messages", len(got))
	}
	if _, n := s.latestMails(0, 10); n != 1 {
		t.Fatalf("the console counts %d messages", n)
	}
}
