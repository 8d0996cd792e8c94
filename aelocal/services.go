package aelocal

import (
	"fmt"
	"net/url"
)

// initServices makes the state of the services beyond memcache and the
// datastore: task queues, mail, users, URL fetch. App identity, modules and
// capability keep none.
func (s *Server) initServices() {
	s.taskqueue = newTaskqueueService(s.Now)
	s.mail = &mailService{maxBytes: mailMaxKeptBytes}
	s.users = newUserService()
	s.fetch = newURLFetchService()
	s.search = newSearchService()
	s.blobstore = newBlobstoreService()
	s.logs = newLogService()
	s.system = newSystemService()
}

// configureServices applies the options that concern those services. It
// runs before the server listens, so a bad queue.yaml or app URL stops it
// from starting.
func (s *Server) configureServices(o *Options) error {
	if err := s.configureBlobstore(o); err != nil {
		return err
	}
	if o.QueueYAML != "" {
		qs, err := loadQueueYAML(o.QueueYAML)
		if err != nil {
			return err
		}
		s.taskqueue.setQueues(qs)
	}
	if o.AppURL != "" {
		u, err := url.Parse(o.AppURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("aelocal: app URL %q: want http://host:port", o.AppURL)
		}
		s.appURL = o.AppURL
	}
	if o.FrontAddr != "" {
		if err := checkFrontAddr(o.FrontAddr, o.AppURL); err != nil {
			return err
		}
		s.frontAddr = o.FrontAddr
	}
	return nil
}

// startServices starts sending push tasks to the app, if the server knows
// where it is, and the app's front end, if asked for.
func (s *Server) startServices() error {
	u, err := url.Parse(s.appURL)
	if err != nil || s.appURL == "" {
		return nil
	}
	s.startDispatcher(u)
	if s.frontAddr != "" {
		return s.startFrontEnd(s.frontAddr, u)
	}
	return nil
}

// stopServices stops the front end and the task dispatcher, and waits for
// the dispatcher's requests.
func (s *Server) stopServices() {
	s.stopFrontEnd()
	s.stopDispatcher()
	s.system.close()
}

// appHost is the app's host:port: AppURL's, or dev_appserver's
// localhost:8080 when the server does not know it.
func (s *Server) appHost() string {
	if u, err := url.Parse(s.appURL); err == nil && u.Host != "" {
		return u.Host
	}
	return "localhost:8080"
}

// notServed completes the error of a call aelocal does not serve.
func notServed(service string) string {
	switch service {
	case "xmpp", "channel", "conversion", "file", "prospective_search", "remote_socket":
		return ": the " + service + " service is not emulated locally"
	}
	return ""
}

// serviceFailureCodes are the codes FailNext uses: each service's transient
// or internal error, so an injected failure never reads as a bad request.
var serviceFailureCodes = map[string]int32{
	"taskqueue":            2,    // TRANSIENT_ERROR
	"mail":                 1,    // INTERNAL_ERROR
	"user":                 5,    // OAUTH_ERROR, its only error that is no caller's fault
	"urlfetch":             9,    // INTERNAL_TRANSIENT_ERROR
	"app_identity_service": 1003, // UNKNOWN_ERROR
	"modules":              4,    // TRANSIENT_ERROR
	"search":               2,    // TRANSIENT_ERROR
	"system":               1,    // INTERNAL_ERROR
}
