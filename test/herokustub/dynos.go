package herokustub

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	hk "github.com/heroku/heroku-go/v5"

	"github.com/herokunix/herokunix/test/dyno"
)

// Dyno states, as the Platform API's dyno schema names them ("current
// status of process (either: crashed, down, idle, starting, or up)";
// heroku-go v5 Dyno.State, v6 schema.json).
const (
	DynoStarting = "starting"
	DynoUp       = "up"
	DynoCrashed  = "crashed"
	DynoDown     = "down"
	DynoIdle     = "idle"
)

// Dyno is one dyno of an app as the stand-in keeps it.
type Dyno struct {
	ID   string
	Name string // e.g. web.1
	Type string
	// ReleaseID and ReleaseVersion are the release the dyno runs.
	ReleaseID      string
	ReleaseVersion int
	Size           string
	Command        string
	State          string
	// URL is where a web dyno run by the stand-in listens
	// (http://127.0.0.1:<PORT>), once started; "" otherwise.
	URL string
	// Output is what a dyno run by the stand-in has printed so far.
	Output    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// dynoRec is a dyno and, when the stand-in runs it, its process.
type dynoRec struct {
	Dyno
	run    *dyno.Dyno
	cancel context.CancelFunc
}

func (d *dynoRec) snapshot() Dyno {
	out := d.Dyno
	if d.run != nil {
		out.Output = d.run.Output()
	}
	return out
}

// dynoJSON is a dyno as the Platform API writes it: heroku-go v5's Dyno,
// the fields of the schema's dyno definition (attach_url, command,
// created_at, id, name, release {id, version}, app {id, name}, size,
// state, type, updated_at).
func dynoJSON(a *app, d *dynoRec) hk.Dyno {
	var out hk.Dyno
	out.App.ID, out.App.Name = a.id, a.name
	out.ID, out.Name, out.Type, out.Size, out.State = d.ID, d.Name, d.Type, d.Size, d.State
	// [U] What Heroku writes as a container dyno's command (the image's
	// entrypoint, or the formation's command) is not known; the stand-in
	// writes the formation's, which is empty unless a test set it.
	out.Command = d.Command
	out.Release.ID, out.Release.Version = d.ReleaseID, d.ReleaseVersion
	out.CreatedAt, out.UpdatedAt = d.CreatedAt, d.UpdatedAt
	return out
}

// listDynos is GET /apps/{app}/dynos (heroku-go "Dyno List").
// [U] The order of the list is not documented; the stand-in sorts by name.
func (s *Server) listDynos(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupApp(w, r)
	if a == nil {
		return
	}
	out := []hk.Dyno{}
	for _, d := range sortedDynos(a) {
		out = append(out, dynoJSON(a, d))
	}
	writeJSON(w, http.StatusOK, out)
}

func sortedDynos(a *app) []*dynoRec {
	out := make([]*dynoRec, 0, len(a.dynos))
	for _, d := range a.dynos {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Dynos returns the app's dynos, sorted by name.
func (s *Server) Dynos(appName string) []Dyno {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return nil
	}
	var out []Dyno
	for _, d := range sortedDynos(a) {
		out = append(out, d.snapshot())
	}
	return out
}

// SetDynoState sets the state of the app's dynos of a process type, as a
// test scripts dynos the stand-in does not run (Options.RunImages unset).
func (s *Server) SetDynoState(appName, processType, state string) error {
	switch state {
	case DynoStarting, DynoUp, DynoCrashed, DynoDown, DynoIdle:
	default:
		return fmt.Errorf("herokustub: %q is not a dyno state", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return fmt.Errorf("herokustub: no app %q", appName)
	}
	n := 0
	for _, d := range a.dynos {
		if d.Type == processType {
			d.State, d.UpdatedAt = state, s.now().UTC()
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("herokustub: app %q has no %s dynos", appName, processType)
	}
	return nil
}

// syncDynos makes the app's dynos what its formation and current release
// say: quantity dynos per process type, named <type>.<n>, all running the
// current release. A new release restarts every dyno (Heroku restarts
// dynos on each release); a dyno of a type scaled down or removed stops.
// New dynos are starting while the stand-in runs them (Options.RunImages)
// and in Options.DynoState otherwise.
// [U] Whether Heroku lists the old dynos beside the new ones while they
// are replaced is not known; the stand-in replaces them at once.
// [U] With RunImages the stand-in runs web dynos only (they are what
// serves HTTP and what herokunix looks at); other types are listed up.
func (s *Server) syncDynos(a *app) {
	var cur *Release
	for _, r := range a.releases {
		if r.Current {
			cur = r
		}
	}
	now := s.now().UTC()
	keep := map[string]*dynoRec{}
	for name, d := range a.dynos {
		f := a.formation[d.Type]
		n := 0
		_, _ = fmt.Sscanf(strings.TrimPrefix(name, d.Type+"."), "%d", &n)
		if cur == nil || d.ReleaseID != cur.ID || f == nil || f.DockerImage == "" || n > f.Quantity {
			s.stopDyno(d)
			continue
		}
		keep[name] = d
	}
	a.dynos = keep
	if cur == nil {
		return
	}
	for _, f := range a.formation {
		if f.DockerImage == "" {
			continue
		}
		for i := 1; i <= f.Quantity; i++ {
			name := fmt.Sprintf("%s.%d", f.Type, i)
			if a.dynos[name] != nil {
				continue
			}
			d := &dynoRec{Dyno: Dyno{ID: newID(), Name: name, Type: f.Type, ReleaseID: cur.ID, ReleaseVersion: cur.Version,
				Size: f.Size, Command: f.Command, State: s.dynoState, CreatedAt: now, UpdatedAt: now}}
			if s.runImages {
				d.State = DynoUp
				if f.Type == "web" {
					d.State = DynoStarting
					s.startWebDyno(a.name, d, f.DockerImage, copyMap(a.configVars))
				}
			}
			a.dynos[name] = d
		}
	}
}

// stopDyno ends a dyno's process, if the stand-in runs it.
func (s *Server) stopDyno(d *dynoRec) {
	if d.cancel != nil {
		d.cancel()
	}
}

// startWebDyno runs a web dyno as Heroku would: the released image's
// entrypoint, with the app's config vars and $PORT (test/dyno, which the
// local default used to run by hand). Its state is what really happens:
// starting until the port answers (up), crashed when the process exits or
// cannot start (Heroku's R10 and crashed states, Dev Center "Dynos").
// [U] Heroku restarts a crashed dyno after a back-off; the stand-in
// leaves it crashed.
func (s *Server) startWebDyno(appName string, d *dynoRec, imageID string, env map[string]string) {
	ctx, cancel := context.WithCancel(s.runCtx)
	d.cancel = cancel
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		defer cancel()
		run, _, err := s.runImage(ctx, appName+"/"+d.Type, imageID, envList(env))
		if err != nil {
			s.setDyno(d, DynoCrashed, nil, "")
			return
		}
		defer os.RemoveAll(run.Root())
		s.setDyno(d, DynoStarting, run, run.URL())
		if err := run.WaitReady(ctx); err == nil {
			s.setDyno(d, DynoUp, run, run.URL())
		}
		<-run.Done()
		if ctx.Err() == nil {
			s.setDyno(d, DynoCrashed, run, run.URL())
		}
	}()
}

func (s *Server) setDyno(d *dynoRec, state string, run *dyno.Dyno, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if run != nil {
		d.run, d.URL = run, url
	}
	d.State, d.UpdatedAt = state, s.now().UTC()
}

// runImage pulls the image whose config digest is imageID from the
// stand-in's own registry (in process, not counted as a call) and starts
// it in a directory of its own under Options.DynoDir, which the caller
// removes (run.Root()).
func (s *Server) runImage(ctx context.Context, repo, imageID string, env []string) (*dyno.Dyno, v1.Image, error) {
	img, err := s.pushedImage(ctx, repo, imageID)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(s.dynoDir, "dyno-")
	if err != nil {
		return nil, nil, err
	}
	run, err := dyno.Start(ctx, img, dir, env)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return run, img, nil
}

// pushedImage reads back an image pushed to repo by its config digest.
func (s *Server) pushedImage(ctx context.Context, repo, imageID string) (v1.Image, error) {
	s.mu.Lock()
	digest := s.manifests[repo+"@"+imageID]
	s.mu.Unlock()
	if digest == "" {
		return nil, fmt.Errorf("herokustub: no image %s was pushed to %s", imageID, repo)
	}
	ref, err := name.NewDigest("herokustub.invalid/"+repo+"@"+digest, name.Insecure)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(handlerTransport{s.registry}))
	if err != nil {
		return nil, fmt.Errorf("herokustub: reading image %s of %s: %w", imageID, repo, err)
	}
	return img, nil
}

// handlerTransport serves requests with a handler in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func envList(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// startReleasePhase runs a pending release's release image as Heroku's
// release phase does: its entrypoint, with the app's config vars; exit 0
// makes the release current (its dynos restart), anything else fails it
// and the previous release keeps running (Dev Center "Release Phase").
// Its output is served on the release's output_stream_url from the moment
// the command starts (404 before), but only when the image has a curl on
// its PATH: Heroku streams release-phase output only then (heroku.md
// "Release phase"; otherwise it is only in the app's logs).
// [U] How Heroku finds curl is not known; the stand-in looks for an entry
// named curl in the image's PATH directories and never runs it.
func (s *Server) startReleasePhase(a *app, rel *Release) {
	appName, relID, imageID := a.name, rel.ID, rel.Images["release"]
	env := envList(a.configVars)
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		run, img, err := s.runImage(s.runCtx, appName+"/release", imageID, env)
		if err != nil {
			s.finishReleasePhase(appName, relID, false, "", false)
			return
		}
		defer os.RemoveAll(run.Root())
		streams := hasCurl(run.Root(), img)
		if streams {
			s.mu.Lock()
			s.phases[relID] = run
			s.mu.Unlock()
		}
		err = run.Err()
		s.finishReleasePhase(appName, relID, err == nil && s.runCtx.Err() == nil, run.Output(), streams)
	}()
}

func (s *Server) finishReleasePhase(appName, relID string, succeeded bool, output string, streamed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.phases, relID)
	if streamed {
		s.outputs[relID] = output
	} else {
		s.noStream[relID] = true
	}
	a := s.apps[appName]
	if a == nil {
		return
	}
	rel := findRelease(a, relID)
	if rel == nil || rel.Status != "pending" {
		return
	}
	if succeeded {
		s.makeCurrent(a, rel)
		return
	}
	rel.Status, rel.UpdatedAt = "failed", s.now().UTC()
}

// hasCurl says whether the unpacked image at root has an entry named curl
// in a directory of its PATH.
func hasCurl(root string, img v1.Image) bool {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if cf, err := img.ConfigFile(); err == nil {
		for _, kv := range cf.Config.Env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) || strings.Contains(dir, "..") {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, dir, "curl")); err == nil {
			return true
		}
	}
	return false
}

// serveOutputStream serves a release's output_stream_url as Heroku does
// (heroku.md "Releasing" step 6): no auth, 404 until the release command
// has started (and for good when the release image has no curl), then
// text/plain that follows the command until it ends. `Range: bytes=N-`
// resumes after the first N bytes.
// [U] The status of a resumed answer (206) and Content-Range are the
// stand-in's; Last-Event-Id (text/event-stream) is not served.
func (s *Server) serveOutputStream(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	out, finished := s.outputs[id]
	run := s.phases[id]
	s.mu.Unlock()
	if run == nil && !finished {
		writeAPIError(w, http.StatusNotFound, "not_found", "Couldn't find that stream.")
		return
	}
	from := 0
	if rng, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		if n, err := strconv.Atoi(strings.TrimSuffix(rng, "-")); err == nil && n > 0 {
			from = n
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if from > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-*/*", from))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	sent := from
	write := func(text string) {
		if len(text) > sent {
			_, _ = w.Write([]byte(text[sent:]))
			sent = len(text)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
	if run == nil {
		write(out)
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		write(run.Output())
		select {
		case <-run.Done():
			write(run.Output())
			return
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		case <-tick.C:
		}
	}
}
