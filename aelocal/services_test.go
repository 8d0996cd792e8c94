package aelocal

import (
	"context"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/capability"
	"google.golang.org/appengine/v2/mail"
	"google.golang.org/appengine/v2/module"
	"google.golang.org/appengine/v2/taskqueue"
	"google.golang.org/appengine/v2/urlfetch"
	"google.golang.org/appengine/v2/user"
)

// loopbackOnly is a dialer for urlfetch that refuses every address but
// the loopback interface's, so a fuzzer that builds a valid URL reaches
// nothing outside the machine.
func loopbackOnly(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, errors.New("test dialer: only loopback addresses")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// recordServiceCalls runs the clients of the services beyond memcache and
// the datastore and returns the requests they sent, as fuzzer seeds.
func recordServiceCalls(tb testing.TB) []recordedCall {
	s := newTestServer(tb)
	s.fetch.dial = loopbackOnly
	var calls []recordedCall
	var mu sync.Mutex
	ctx := appengine.WithAPICallFunc(middlewareContext(tb, s), func(ctx context.Context, service, method string, in, out gproto.Message) error {
		if req, err := gproto.Marshal(in); err == nil {
			mu.Lock()
			calls = append(calls, recordedCall{name: service + "." + method, request: req})
			mu.Unlock()
		}
		return s.apiCall(ctx, service, method, in, out)
	})
	// Errors are expected for some calls; only the requests matter.
	taskqueue.Add(ctx, &taskqueue.Task{Name: "t", Path: "/p", Payload: []byte("x"), Delay: time.Second,
		RetryOptions: &taskqueue.RetryOptions{RetryLimit: 3, MinBackoff: time.Second}}, "")
	taskqueue.AddMulti(ctx, []*taskqueue.Task{{}, {Method: "PULL", Tag: "t"}}, "")
	taskqueue.Lease(ctx, 10, "", 60)
	taskqueue.LeaseByTag(ctx, 10, "", 60, "t")
	taskqueue.ModifyLease(ctx, &taskqueue.Task{Name: "t", ETA: time.Now()}, "", 10)
	taskqueue.QueueStats(ctx, []string{"", "other"})
	taskqueue.Delete(ctx, &taskqueue.Task{Name: "t"}, "")
	taskqueue.Purge(ctx, "")
	mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: "s", Body: "b",
		Attachments: []mail.Attachment{{Name: "a.txt", Data: []byte("a"), ContentID: "<a>"}}})
	mail.SendToAdmins(ctx, &mail.Message{Sender: "a@example.com", Subject: "s", HTMLBody: "<b>b</b>"})
	user.LoginURL(ctx, "/x")
	user.LogoutURL(ctx, "/x")
	user.CurrentOAuth(ctx, "scope")
	user.OAuthConsumerKey(ctx)
	urlfetch.Client(ctx).Get("http://127.0.0.1:1/")
	appengine.ServiceAccount(ctx)
	appengine.AccessToken(ctx, "scope")
	appengine.PublicCertificates(ctx)
	appengine.SignBytes(ctx, []byte("x"))
	appengine.ModuleHostname(ctx, "default", "1", "")
	module.List(ctx)
	module.Versions(ctx, "")
	module.NumInstances(ctx, "", "")
	capability.Enabled(ctx, "datastore_v3", "write")
	return calls
}

// Services aelocal does not emulate fail each call with an error that
// names it. (appengine/v2 has no XMPP client: the call goes raw.)
func TestUnservedServices(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		req, _ := newMsg("appengine.base.v2.VoidProto")
		resp, _ := newMsg("appengine.base.v2.VoidProto")
		err := appengine.APICall(ctx, "xmpp", "SendMessage", protoV1(req), protoV1(resp))
		wantAPIError(t, err, "", "aelocal does not serve xmpp.SendMessage: the xmpp service is not emulated locally")
	})
}

func TestStatusPageShowsQueuesAndMail(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	taskqueue.Add(ctx, &taskqueue.Task{}, "")
	mail.Send(ctx, &mail.Message{Sender: "a@example.com", To: []string{"b@example.com"}, Subject: "Hello", Body: "b"})
	mail.SendToAdmins(ctx, &mail.Message{Sender: "a@example.com", Subject: "Alert", Body: "b"})
	resp, err := http.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := html.UnescapeString(string(b)) // the console's home page
	for _, want := range []string{"1 task in 1 queue", "2 messages kept, never sent"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
}
