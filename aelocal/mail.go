package aelocal

import (
	"bytes"
	"cmp"
	netmail "net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/appengine/v2/mail"
)

// Application error codes of the mail service (MailServiceError.ErrorCode).
const (
	mailBadRequest            = 2
	mailInvalidAttachmentType = 4
	mailInvalidHeaderName     = 5
	mailInvalidContentID      = 6
)

// mailMaxMessageBytes is production's limit on a message with its
// attachments (31.5 MB).
const mailMaxMessageBytes = 31*1024*1024 + 512*1024

// mailMaxKept bounds the messages a server keeps for inspection: a local
// app that sends mail in a loop must not grow the server without end. The
// oldest go first.
const mailMaxKept = 10000

// mailMaxKeptBytes bounds the bytes of the messages kept, attachments
// included: 10,000 messages of production's 31.5 MB would be 300 GB. The
// newest message is kept whatever its size.
const mailMaxKeptBytes = 256 << 20

// Attachment extensions production refuses (the SDK's EXTENSION_BLACKLIST).
var mailBlockedExtensions = map[string]bool{
	"ade": true, "adp": true, "bat": true, "chm": true, "cmd": true, "com": true,
	"cpl": true, "exe": true, "hta": true, "ins": true, "isp": true, "jse": true,
	"lib": true, "mde": true, "msc": true, "msp": true, "mst": true, "pif": true,
	"scr": true, "sct": true, "shb": true, "sys": true, "vb": true, "vbe": true,
	"vbs": true, "vxd": true, "wsc": true, "wsf": true, "wsh": true,
}

// Extra headers production lets a message carry (the SDK's HEADER_WHITELIST).
var mailAllowedHeaders = map[string]bool{
	"Auto-Submitted": true, "In-Reply-To": true, "List-Id": true,
	"List-Unsubscribe": true, "On-Behalf-Of": true, "References": true,
	"Resent-Date": true, "Resent-From": true, "Resent-To": true,
}

// sentMail is a message the app sent: kept, never delivered.
type sentMail struct {
	msg      *mail.Message
	toAdmins bool // SendToAdmins
	at       time.Time
	seq      uint64 // 1 for the first message the server kept, and so on
	size     int    // bytes of the encoded message
}

// mailService implements the "mail" service. Nothing leaves the machine:
// messages are kept for Mail and the console.
type mailService struct {
	mu       sync.Mutex
	sent     []sentMail // by seq
	seq      uint64     // of the last message kept
	bytes    int        // the sizes of sent, summed
	maxBytes int        // mailMaxKeptBytes; tests lower it
}

func init() {
	register("mail", "Send", "appengine.v2.MailMessage", "appengine.base.v2.VoidProto", mailSend)
	register("mail", "SendToAdmins", "appengine.v2.MailMessage", "appengine.base.v2.VoidProto", mailSendToAdmins)
}

// Mail returns the messages sent so far through mail.Send and
// mail.SendToAdmins, oldest first. They are copies. Nothing is ever
// delivered: aelocal keeps the last 10,000 messages for inspection, and
// fewer if they pass 256 MiB with their attachments.
func (s *Server) Mail() []*mail.Message {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	out := make([]*mail.Message, len(s.mail.sent))
	for i, m := range s.mail.sent {
		out[i] = copyMessage(m.msg)
	}
	return out
}

// latestMails returns up to n of the messages kept, newest first, after
// skipping the offset newest, with when and how each was sent; and how
// many are kept. They are copies.
func (s *Server) latestMails(offset, n int) ([]sentMail, int) {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	sent := s.mail.sent
	var out []sentMail
	for i := len(sent) - 1 - offset; i >= 0 && len(out) < n; i-- {
		m := sent[i]
		m.msg = copyMessage(m.msg)
		out = append(out, m)
	}
	return out, len(sent)
}

// mailBySeq returns a copy of the message kept with number seq.
func (s *Server) mailBySeq(seq uint64) (sentMail, bool) {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	sent := s.mail.sent
	i, ok := slices.BinarySearchFunc(sent, seq, func(m sentMail, seq uint64) int { return cmp.Compare(m.seq, seq) })
	if !ok {
		return sentMail{}, false
	}
	m := sent[i]
	m.msg = copyMessage(m.msg)
	return m, true
}

// clearMail forgets the messages sent so far.
func (s *Server) clearMail() {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	s.mail.sent, s.mail.bytes = nil, 0
}

func copyMessage(m *mail.Message) *mail.Message {
	c := *m
	c.To, c.Cc, c.Bcc = slices.Clone(m.To), slices.Clone(m.Cc), slices.Clone(m.Bcc)
	c.Attachments = slices.Clone(m.Attachments)
	for i := range c.Attachments {
		c.Attachments[i].Data = bytes.Clone(c.Attachments[i].Data)
	}
	if m.Headers != nil {
		c.Headers = make(netmail.Header, len(m.Headers))
		for k, v := range m.Headers {
			c.Headers[k] = slices.Clone(v)
		}
	}
	return &c
}

func mailSend(s *Server, in, out pmsg) error         { return s.mail.send(s.Now(), in, false) }
func mailSendToAdmins(s *Server, in, out pmsg) error { return s.mail.send(s.Now(), in, true) }

func (ms *mailService) send(now time.Time, in pmsg, toAdmins bool) error {
	m, err := checkMail(in, toAdmins)
	if err != nil {
		return err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.seq++
	ms.sent = append(ms.sent, sentMail{m, toAdmins, now, ms.seq, in.Size()})
	ms.bytes += in.Size()
	// The oldest go first.
	drop := 0
	for len(ms.sent)-drop > mailMaxKept || (ms.bytes > ms.maxBytes && len(ms.sent)-drop > 1) {
		ms.bytes -= ms.sent[drop].size
		drop++
	}
	ms.sent = slices.Delete(ms.sent, 0, drop)
	return nil
}

// checkMail applies production's checks to a MailMessage and converts it.
// The one check aelocal cannot make is whether the sender may send for the
// app (an admin, the signed-in user, or an address of the app's
// appspotmail.com domain): it knows no admins, so any well-formed sender
// passes.
func checkMail(in pmsg, toAdmins bool) (*mail.Message, error) {
	if in.Size() > mailMaxMessageBytes {
		return nil, errorf(mailBadRequest, "the message is %d bytes; the limit with attachments is %d", in.Size(), mailMaxMessageBytes)
	}
	m := &mail.Message{
		Sender:   in.Str("Sender"),
		ReplyTo:  in.Str("ReplyTo"),
		To:       strs(in.BytesList("To")),
		Cc:       strs(in.BytesList("Cc")),
		Bcc:      strs(in.BytesList("Bcc")),
		Subject:  in.Str("Subject"),
		Body:     in.Str("TextBody"),
		HTMLBody: in.Str("HtmlBody"),
	}
	if strings.TrimSpace(m.Sender) == "" {
		return nil, errorf(mailBadRequest, "missing sender")
	}
	if _, err := netmail.ParseAddress(m.Sender); err != nil {
		return nil, errorf(mailBadRequest, "invalid sender address %q: %v", m.Sender, err)
	}
	if m.ReplyTo != "" {
		if _, err := netmail.ParseAddress(m.ReplyTo); err != nil {
			return nil, errorf(mailBadRequest, "invalid reply-to address %q: %v", m.ReplyTo, err)
		}
	}
	if !toAdmins && len(m.To)+len(m.Cc)+len(m.Bcc) == 0 {
		return nil, errorf(mailBadRequest, "missing recipients: a message needs at least one To, Cc or Bcc address")
	}
	for _, field := range []struct {
		name  string
		addrs []string
	}{{"To", m.To}, {"Cc", m.Cc}, {"Bcc", m.Bcc}} {
		for _, a := range field.addrs {
			if _, err := netmail.ParseAddress(a); err != nil {
				return nil, errorf(mailBadRequest, "invalid %s address %q: %v", field.name, a, err)
			}
		}
	}
	if !in.Has("TextBody") && !in.Has("HtmlBody") {
		return nil, errorf(mailBadRequest, "missing body: a message needs a text or an HTML body")
	}
	for _, a := range in.Msgs("Attachment") {
		name := a.Str("FileName")
		if err := checkAttachmentName(name); err != nil {
			return nil, err
		}
		att := mail.Attachment{Name: name, Data: a.Bytes("Data")}
		if a.Has("ContentID") {
			att.ContentID = a.Str("ContentID")
			if !strings.HasPrefix(att.ContentID, "<") || !strings.HasSuffix(att.ContentID, ">") || len(att.ContentID) < 3 {
				return nil, errorf(mailInvalidContentID, "invalid Content-ID %q of attachment %q: it must look like <id>", att.ContentID, name)
			}
		}
		m.Attachments = append(m.Attachments, att)
	}
	for _, h := range in.Msgs("Header") {
		name := strings.TrimSpace(h.Str("name"))
		if !mailAllowedHeaders[name] {
			return nil, errorf(mailInvalidHeaderName, "header %q is not allowed; the allowed ones are %s", name, strings.Join(sortedKeys(mailAllowedHeaders), ", "))
		}
		if m.Headers == nil {
			m.Headers = make(netmail.Header)
		}
		m.Headers[name] = append(m.Headers[name], h.Str("value"))
	}
	return m, nil
}

// checkAttachmentName refuses the file names the stub and production
// refuse: hidden files, names without an extension, blocked extensions.
func checkAttachmentName(name string) error {
	if strings.HasPrefix(name, ".") {
		return errorf(mailInvalidAttachmentType, "invalid attachment type: attachments cannot be hidden files; received %q", name)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return errorf(mailInvalidAttachmentType, "invalid attachment type: attachments must have a file extension; received %q", name)
	}
	if ext := strings.ToLower(name[dot+1:]); mailBlockedExtensions[ext] {
		return errorf(mailInvalidAttachmentType, "invalid attachment type: the extension of %q is blocked", name)
	}
	return nil
}

func strs(bs [][]byte) []string {
	if len(bs) == 0 {
		return nil
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
