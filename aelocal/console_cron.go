package aelocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The cron page: the jobs of the app's cron.yaml (Options.CronYAML) and a
// button that runs one now, as App Engine's cron service would: a GET of
// the job's URL on the app (Options.AppURL) with X-Appengine-Cron: true.
// aelocal does not run jobs on their schedule; like dev_appserver, it
// leaves that to a person with this page.

// cronTimeout bounds one run: App Engine gives a cron request of an
// automatically scaled service 10 minutes.
const cronTimeout = 10 * time.Minute

// answerExcerpt is how much of the app's answer to a cron job or a task
// run from the console the page shows.
const answerExcerpt = 2048

// cronFile is cron.yaml.
type cronFile struct {
	Cron []cronJob `yaml:"cron"`
}

// cronJob is one entry of cron.yaml. Fields aelocal does not use
// (retry_parameters, attempt_deadline) are accepted and ignored.
type cronJob struct {
	Description string `yaml:"description"`
	URL         string `yaml:"url"`
	Schedule    string `yaml:"schedule"`
	Target      string `yaml:"target"`
	Timezone    string `yaml:"timezone"`
}

// id identifies a job across reloads of cron.yaml.
func (j cronJob) id() string { return j.URL + "\x00" + j.Schedule + "\x00" + j.Target }

// cronRun is the outcome of one run from the console.
type cronRun struct {
	At       time.Time
	Duration time.Duration
	Status   string // "200 OK"; empty if no response came
	OK       bool   // a 2xx answer
	Body     string // the start of the response
	Err      string // why no response came
}

// loadCron reads and checks cron.yaml.
func loadCron(path string) ([]cronJob, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cron.yaml: %w", err)
	}
	var f cronFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("cron.yaml %s: %w", path, err)
	}
	for i, j := range f.Cron {
		switch {
		case j.URL == "":
			return nil, fmt.Errorf("cron.yaml %s: job %d has no url", path, i+1)
		case !strings.HasPrefix(j.URL, "/"):
			return nil, fmt.Errorf("cron.yaml %s: job %d: url %q must start with /", path, i+1, j.URL)
		case strings.TrimSpace(j.Schedule) == "":
			return nil, fmt.Errorf("cron.yaml %s: job %d (%s) has no schedule", path, i+1, j.URL)
		}
	}
	return f.Cron, nil
}

type cronPage struct {
	YAML, AppURL string
	Jobs         []cronJobView
	Now          time.Time
}

type cronJobView struct {
	cronJob
	Index int
	Last  *cronRun
}

func (c *console) cronRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /cron", c.serveCron)
	c.post(mux, "/cron/run", c.postCronRun)
}

func (c *console) serveCron(w http.ResponseWriter, r *http.Request) {
	d := &cronPage{YAML: c.cronYAML, AppURL: c.appURL, Now: time.Now()}
	page := &consolePage{Title: "Cron", Section: "Cron", Data: d}
	if c.cronYAML != "" {
		// Read on every visit: people edit cron.yaml while the server runs.
		jobs, err := loadCron(c.cronYAML)
		if err != nil {
			page.Error = err.Error()
		}
		c.mu.Lock()
		for i, j := range jobs {
			v := cronJobView{cronJob: j, Index: i}
			if run, ok := c.cronRuns[j.id()]; ok {
				v.Last = &run
			}
			d.Jobs = append(d.Jobs, v)
		}
		c.mu.Unlock()
	}
	c.render(w, r, http.StatusOK, "cron", page)
}

func (c *console) postCronRun(w http.ResponseWriter, r *http.Request) {
	if c.cronYAML == "" || c.appURL == "" {
		c.fail(w, r, http.StatusBadRequest, errors.New("running a cron job needs both cron.yaml (-cron_yaml) and the app's URL (-app_url)"))
		return
	}
	jobs, err := loadCron(c.cronYAML)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	i, err := strconv.Atoi(r.PostForm.Get("job"))
	if err != nil || i < 0 || i >= len(jobs) || jobs[i].URL != r.PostForm.Get("url") {
		c.fail(w, r, http.StatusConflict, errors.New("cron.yaml changed since the page was loaded: reload it and try again"))
		return
	}
	run := c.runCron(r.Context(), jobs[i])
	c.mu.Lock()
	c.cronRuns[jobs[i].id()] = run
	c.mu.Unlock()
	redirect(w, r, "/cron", nil, "cronran")
}

// appClient sends the console's requests (cron jobs, tasks run now)
// straight to the app: no proxy, and no following of redirects, whose
// status the page should show instead (App Engine's cron and task queues
// do not follow them either).
var appClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// runCron sends job's request to the app.
func (c *console) runCron(ctx context.Context, job cronJob) cronRun {
	ctx, cancel := context.WithTimeout(ctx, cronTimeout)
	defer cancel()
	run := cronRun{At: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.appURL+job.URL, nil)
	if err != nil {
		run.Err = err.Error()
		return run
	}
	// What App Engine's cron service sends; App Engine strips this header
	// from any request from outside, which is why apps trust it.
	req.Header.Set("X-Appengine-Cron", "true")
	resp, err := appClient.Do(req)
	if err != nil {
		run.Duration = time.Since(run.At)
		run.Err = err.Error()
		return run
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, answerExcerpt+1))
	run.Duration = time.Since(run.At)
	run.Status, run.OK = resp.Status, resp.StatusCode/100 == 2
	run.Body = bodyExcerpt(body, answerExcerpt)
	return run
}

// bodyExcerpt shows the first n bytes of an answer's body read with a
// limit of n+1, and marks a longer one as cut.
func bodyExcerpt(body []byte, n int) string {
	text, _ := showBytes(body[:min(len(body), n)])
	if len(body) > n {
		text += "\n..."
	}
	return text
}
