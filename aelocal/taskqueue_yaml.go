package aelocal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// queueYAML is the shape of queue.yaml.
type queueYAML struct {
	Application        string `yaml:"application"`
	TotalStorageLimit  string `yaml:"total_storage_limit"`
	ResumePausedQueues string `yaml:"resume_paused_queues"`
	Queue              []struct {
		Name                  string `yaml:"name"`
		Mode                  string `yaml:"mode"`
		Rate                  string `yaml:"rate"`
		BucketSize            *int   `yaml:"bucket_size"`
		MaxConcurrentRequests *int   `yaml:"max_concurrent_requests"`
		Target                string `yaml:"target"`
		RetryParameters       *struct {
			TaskRetryLimit    *int32   `yaml:"task_retry_limit"`
			TaskAgeLimit      string   `yaml:"task_age_limit"`
			MinBackoffSeconds *float64 `yaml:"min_backoff_seconds"`
			MaxBackoffSeconds *float64 `yaml:"max_backoff_seconds"`
			MaxDoublings      *int32   `yaml:"max_doublings"`
		} `yaml:"retry_parameters"`
		ACL []struct {
			UserEmail   string `yaml:"user_email"`
			WriterEmail string `yaml:"writer_email"`
		} `yaml:"acl"`
	} `yaml:"queue"`
}

var (
	rateRE    = regexp.MustCompile(`^(0|[0-9]+(\.[0-9]*)?/[smhd])$`)
	ageUnitRE = regexp.MustCompile(`^[0-9]+(\.[0-9]*)?[smhd]$`)
)

// loadQueueYAML reads the queues of a queue.yaml file.
func loadQueueYAML(path string) ([]*tqQueue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("aelocal: queue.yaml: %w", err)
	}
	qs, err := parseQueueYAML(b)
	if err != nil {
		return nil, fmt.Errorf("aelocal: %s: %w", path, err)
	}
	return qs, nil
}

// parseQueueYAML checks a queue.yaml the way the SDK's queueinfo does
// before a deploy, and returns its queues.
func parseQueueYAML(b []byte) ([]*tqQueue, error) {
	var y queueYAML
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key fails a deploy, so it fails here
	if err := dec.Decode(&y); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var out []*tqQueue
	seen := make(map[string]bool)
	for i, e := range y.Queue {
		if !tqQueueNameRE.MatchString(e.Name) {
			return nil, fmt.Errorf("queue %d: invalid name %q: it must match %s", i+1, e.Name, tqQueueNameRE)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("queue %q is declared twice", e.Name)
		}
		seen[e.Name] = true
		q := newQueue(e.Name)
		switch e.Mode {
		case "", "push":
		case "pull":
			q.pull = true
		default:
			return nil, fmt.Errorf("queue %q: mode %q is neither push nor pull", e.Name, e.Mode)
		}
		if e.Rate != "" {
			r, err := parseRate(e.Rate)
			if err != nil {
				return nil, fmt.Errorf("queue %q: %w", e.Name, err)
			}
			q.rate, q.rateString = r, e.Rate
		}
		// A push queue without a rate gets the default one (the SDK warns
		// and goes on); a pull queue has no rate.
		if q.pull {
			q.rate, q.rateString = 0, ""
		}
		if e.BucketSize != nil {
			if *e.BucketSize < 0 {
				return nil, fmt.Errorf("queue %q: bucket_size %d is negative", e.Name, *e.BucketSize)
			}
			q.bucketSize = *e.BucketSize
			q.tokens = float64(q.bucketSize)
		}
		if e.MaxConcurrentRequests != nil {
			if *e.MaxConcurrentRequests < 0 {
				return nil, fmt.Errorf("queue %q: max_concurrent_requests %d is negative", e.Name, *e.MaxConcurrentRequests)
			}
			q.maxConcurrent = *e.MaxConcurrentRequests
		}
		q.target = e.Target
		if rp := e.RetryParameters; rp != nil {
			r := defaultRetry()
			if rp.TaskRetryLimit != nil {
				r.hasLimit, r.limit = true, *rp.TaskRetryLimit
			}
			if rp.TaskAgeLimit != "" {
				sec, err := parseAgeLimit(rp.TaskAgeLimit)
				if err != nil {
					return nil, fmt.Errorf("queue %q: %w", e.Name, err)
				}
				r.hasAge, r.ageSec = true, sec
			}
			if rp.MinBackoffSeconds != nil {
				r.minBackoff = *rp.MinBackoffSeconds
				if rp.MaxBackoffSeconds == nil && r.minBackoff > r.maxBackoff {
					r.maxBackoff = r.minBackoff
				}
			}
			if rp.MaxBackoffSeconds != nil {
				r.maxBackoff = *rp.MaxBackoffSeconds
				if rp.MinBackoffSeconds == nil && r.minBackoff > r.maxBackoff {
					r.minBackoff = r.maxBackoff
				}
			}
			if rp.MaxDoublings != nil {
				r.maxDoublings = *rp.MaxDoublings
			}
			if !r.valid() {
				return nil, fmt.Errorf("queue %q: invalid retry_parameters: no value may be negative and min_backoff_seconds may not exceed max_backoff_seconds", e.Name)
			}
			q.retry = r
		}
		out = append(out, q)
	}
	return out, nil
}

// parseRate converts "5/s", "10/m", "100/h", "1/d" or "0" to tasks a second.
func parseRate(s string) (float64, error) {
	if !rateRE.MatchString(s) {
		return 0, fmt.Errorf("invalid rate %q: want a number, a slash and one of s, m, h, d, such as 5/s", s)
	}
	if s == "0" {
		return 0, nil
	}
	num, unit, _ := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q", s)
	}
	return n / unitSeconds(unit), nil
}

// parseAgeLimit converts a task_age_limit such as "2d" or "1.5h" to seconds.
func parseAgeLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if !ageUnitRE.MatchString(s) {
		return 0, fmt.Errorf("invalid task_age_limit %q: want a number and one of s, m, h, d, such as 2d", s)
	}
	n, err := strconv.ParseFloat(s[:len(s)-1], 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid task_age_limit %q: it must be greater than zero", s)
	}
	return int64(n * unitSeconds(s[len(s)-1:])), nil
}

func unitSeconds(unit string) float64 {
	switch unit {
	case "m":
		return 60
	case "h":
		return 3600
	case "d":
		return 86400
	}
	return 1
}
