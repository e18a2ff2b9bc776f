// Package herokustub is a stand-in for the Heroku Platform API and container
// registry, faithful for the calls herokunix and Heroku's own clients (the
// CLI's container:*, releases and ps:scale; heroku-go) make. Every behaviour
// comes from a source named in shared/design/heroku.md; where the stand-in
// chooses without one, its comment says "[U]", and where it is stricter
// than Heroku is known to be, it says that.
//
// It checks Bearer auth and the Accept version, sends Request-Id and
// RateLimit-Remaining, spends a 4,500-token bucket refilled at 75 a minute,
// keeps Cedar and Fir apps, releases (pending, succeeded, failed, expired,
// null) and formation with its release-phase image, releases per process
// type against the formation, runs the release phase for every new release
// while a release image is set, removes process types, rolls back, pages
// with Heroku's ranges, writes Heroku's error bodies, resolves docker_image
// to config digests actually pushed to <app>/<type>, lists the dynos the
// formation runs of the current release (GET /apps/{app}/dynos, the
// schema's fields and states), and lets tests inject faults. With
// Options.RunImages it runs what it releases, as Heroku would: web dynos
// are the released image's entrypoint run locally with $PORT (test/dyno),
// reported starting, up or crashed from what really happens, and the
// release phase is the release image's command, whose exit status decides
// the release and whose output it streams. It imports no testing package.
package herokustub

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/herokunix/herokunix/test/dyno"
)

// Options configure a Server.
type Options struct {
	// APIKey is the only key the API (Bearer) and registry (Basic password)
	// accept.
	APIKey string
	// RateLimitBudget is the bucket size, default 4500.
	RateLimitBudget int
	// RefillPerMinute is the bucket refill, default 75.
	RefillPerMinute int
	// Now is the clock of the bucket and timestamps, default time.Now.
	Now func() time.Time
	// BareApps makes CreateApp create apps without Heroku's first two
	// releases ("Initial release", "Enable Logplex").
	BareApps bool
	// Logger receives the wrapped registry's log; default discards.
	Logger *log.Logger
	// RunImages makes the stand-in run what Heroku would of a release: the
	// web dynos (the image's entrypoint with $PORT, reported starting, up
	// or crashed from what really happens) and the release phase (the
	// release image's command; its exit status decides the release, its
	// output is served on output_stream_url). Images must be real (a
	// test's random images are not programs). Unset, nothing runs:
	// release phases stay pending until CompletePendingRelease, and dynos
	// are listed in DynoState.
	RunImages bool
	// DynoDir is where run images are unpacked (default: the system's
	// temporary directory).
	DynoDir string
	// DynoState is the state of new dynos when RunImages is unset (default
	// up); SetDynoState changes it.
	DynoState string
	// Describe writes the description of a docker release from the types
	// it updated (type -> image ID). Heroku's text is known for one type
	// only ("Deployed web (142013fe2b5c)"); default DescribeUpdated. Tests
	// set it to replay other possible texts.
	Describe func(updated map[string]string) string
}

// DescribeUpdated is the default description of a docker release:
// "Deployed web (142013fe2b5c)" for one type, as Heroku writes it (Heroku
// CLI container:release; heroku.md "Description").
// [U] For several types it lists only the updated ones, sorted, joined by
// ", " ("Deployed web (…), worker (…)"): neither the join nor whether
// skipped types are listed is documented.
func DescribeUpdated(updated map[string]string) string {
	types := make([]string, 0, len(updated))
	for t := range updated {
		types = append(types, t)
	}
	sort.Strings(types)
	parts := make([]string, 0, len(types))
	for _, t := range types {
		parts = append(parts, fmt.Sprintf("%s (%s)", t, shortImageID(updated[t])))
	}
	return "Deployed " + strings.Join(parts, ", ")
}

// shortImageID is the first 12 hex digits of an image ID.
func shortImageID(id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// Generations of Heroku apps (GET /apps/{app} "generation", heroku-go v6
// schema; Dev Center "Generations").
const (
	GenerationCedar = "cedar"
	GenerationFir   = "fir"
)

// Release is one release of an app as the stand-in keeps it.
type Release struct {
	ID      string
	Version int
	// Status is pending, succeeded, failed, expired (artifacts destroyed,
	// heroku.md "Retention"), or "" for the null status legacy releases
	// carry (heroku.md "Statuses").
	Status      string
	Current     bool
	Description string
	// Images maps process type to the image ID (config digest) the release
	// runs: the formation's images with the request's updates, "release"
	// included when the formation holds one. nil for releases that carry no
	// images (Heroku's first releases).
	Images    map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Formation is one process type of an app.
type Formation struct {
	ID          string
	Type        string
	Quantity    int
	Size        string
	DockerImage string
	Command     string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Call is one request the stand-in answered (or dropped: Status 0).
type Call struct {
	Handler string // "api" or "registry"
	Method  string
	Path    string
	Status  int
	Accept  string
	Range   string
	// Auth is "bearer", "basic" or "" (the key itself is never kept).
	Auth string
	// BasicUser is the Basic-auth user name, when Auth is "basic".
	BasicUser string
	// Fault says an injected fault answered this call.
	Fault bool
}

// IsWrite says whether the call could change state.
func (c Call) IsWrite() bool {
	return c.Method != http.MethodGet && c.Method != http.MethodHead
}

type app struct {
	id, name          string
	stack, buildStack string
	generation        string
	// releaseImage is the formation's release-phase image: Heroku keeps it
	// until `container:rm release` and runs it for every new release
	// (Dev Center "Release Phase"; heroku.md "Release phase").
	// [U] Whether GET /apps/{app}/formation lists a "release" entry is not
	// known; the stand-in keeps it apart and does not list it.
	releaseImage string
	webURL       string
	createdAt    time.Time
	updatedAt    time.Time
	releasedAt   *time.Time
	releases     []*Release
	formation    map[string]*Formation
	// dynos by name (web.1): what the formation runs of the current release.
	dynos      map[string]*dynoRec
	configVars map[string]string
}

// Server is the stand-in. All methods are safe for concurrent use.
type Server struct {
	key        string
	budget     float64
	refill     float64 // tokens per second
	now        func() time.Time
	bareApps   bool
	describe   func(map[string]string) string
	faults     *Faults
	blobs      registry.BlobHandler
	registry   http.Handler
	closed     chan struct{}
	closeOnce  sync.Once
	apiHandler http.Handler

	mu      sync.Mutex
	apps    map[string]*app // by name
	tokens  float64
	last    time.Time
	pushed  map[string]map[string]bool // repository -> config digests
	tags    map[string]string          // repository:tag -> config digest
	calls   []Call
	outputs map[string]string // release id -> release-phase output
	// manifests maps <repo>@<config digest> to the manifest digest pushed.
	manifests map[string]string
	// phases are release phases running (RunImages), by release id.
	phases map[string]*dyno.Dyno
	// noStream marks releases whose release phase streamed nothing (no
	// curl in the release image).
	noStream map[string]bool

	runImages bool
	dynoDir   string
	dynoState string
	// runCtx ends every process the stand-in runs (Close); runs counts
	// the goroutines that watch them.
	runCtx    context.Context
	runCancel context.CancelFunc
	runs      sync.WaitGroup
}

// New returns a Server with no apps.
func New(opts Options) *Server {
	s := &Server{
		key:      opts.APIKey,
		budget:   float64(opts.RateLimitBudget),
		refill:   float64(opts.RefillPerMinute) / 60,
		now:      opts.Now,
		bareApps: opts.BareApps,
		describe: opts.Describe,
		faults:   &Faults{},
		blobs:    registry.NewInMemoryBlobHandler(),
		closed:   make(chan struct{}),
		apps:     map[string]*app{},
		pushed:   map[string]map[string]bool{},
		tags:     map[string]string{},
		outputs:  map[string]string{},

		manifests: map[string]string{},
		phases:    map[string]*dyno.Dyno{},
		noStream:  map[string]bool{},
		runImages: opts.RunImages,
		dynoDir:   opts.DynoDir,
		dynoState: opts.DynoState,
	}
	s.runCtx, s.runCancel = context.WithCancel(context.Background())
	if s.dynoState == "" {
		s.dynoState = DynoUp
	}
	if s.budget <= 0 {
		s.budget = 4500
	}
	if s.refill <= 0 {
		s.refill = 75.0 / 60
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.describe == nil {
		s.describe = DescribeUpdated
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	s.registry = registry.New(registry.Logger(logger), registry.WithBlobHandler(s.blobs))
	s.tokens = s.budget
	s.last = s.now()
	s.apiHandler = s.newAPIHandler()
	return s
}

// Close releases requests held by a Hang fault, stops every dyno and
// release phase the stand-in runs and waits for them. Call it before
// closing the HTTP server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.runCancel()
	})
	s.runs.Wait()
}

// Faults is the fault injector.
func (s *Server) Faults() *Faults { return s.faults }

// CreateApp adds a Cedar app on the given stack ("container", "heroku-24",
// …); its stack and build stack are both set. Stack "cnb" makes a Fir app,
// as CreateFirApp. Unless Options.BareApps, it gets Heroku's first two
// releases, as a new Heroku app does.
func (s *Server) CreateApp(name, stack string) {
	gen := GenerationCedar
	if stack == "cnb" {
		gen = GenerationFir
	}
	s.createApp(name, stack, gen)
}

// CreateFirApp adds a Fir app: its stack is always "cnb" and it takes no
// container images (Dev Center "Generations", "Cedar to Fir migration":
// "Docker and monorepo apps are unsupported on Fir").
func (s *Server) CreateFirApp(name string) { s.createApp(name, "cnb", GenerationFir) }

func (s *Server) createApp(name, stack, generation string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	a := &app{id: newID(), name: name, stack: stack, buildStack: stack, generation: generation,
		webURL:    fmt.Sprintf("https://%s-%s.herokuapp.com/", name, newID()[:12]),
		createdAt: now, updatedAt: now, formation: map[string]*Formation{}, dynos: map[string]*dynoRec{}}
	s.apps[name] = a
	if !s.bareApps {
		s.addRelease(a, "Initial release", nil, "succeeded")
		s.addRelease(a, "Enable Logplex by herokunix@example.com", nil, "succeeded")
	}
}

// SetStack sets the app's stack and build stack, as `heroku stack:set`
// followed by a release does. A Fir app's stack is always "cnb" and cannot
// be changed (Dev Center "Stacks"): SetStack leaves it.
func (s *Server) SetStack(appName, stack string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appName]; a != nil && a.generation != GenerationFir {
		a.stack, a.buildStack = stack, stack
	}
}

// SetBuildStack sets only the build stack, as `heroku stack:set` does before
// the next release (not on Fir apps, whose stack cannot change).
func (s *Server) SetBuildStack(appName, stack string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appName]; a != nil && a.generation != GenerationFir {
		a.buildStack = stack
	}
}

// Releases returns the app's releases, oldest first.
func (s *Server) Releases(appName string) []Release {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return nil
	}
	out := make([]Release, 0, len(a.releases))
	for _, r := range a.releases {
		c := *r
		c.Images = copyMap(r.Images)
		out = append(out, c)
	}
	return out
}

// Formation returns the app's process types, sorted by type.
func (s *Server) Formation(appName string) []Formation {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return nil
	}
	return sortedFormation(a)
}

// SetFormation adds or replaces a process type.
func (s *Server) SetFormation(appName string, f Formation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return
	}
	now := s.now().UTC()
	if f.ID == "" {
		f.ID = newID()
	}
	if f.Size == "" {
		f.Size = defaultSize
	}
	if f.CreatedAt.IsZero() {
		f.CreatedAt, f.UpdatedAt = now, now
	}
	a.formation[f.Type] = &f
}

// Pushed returns the config digests ever pushed to repository <app>/<type>.
func (s *Server) Pushed(repository string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d := range s.pushed[repository] {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// CompletePendingRelease ends the app's pending release: it becomes current
// when succeed, or failed (the previous release stays current) otherwise.
func (s *Server) CompletePendingRelease(appName string, succeed bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return fmt.Errorf("herokustub: no app %q", appName)
	}
	for i := len(a.releases) - 1; i >= 0; i-- {
		r := a.releases[i]
		if r.Status != "pending" {
			continue
		}
		if succeed {
			s.makeCurrent(a, r)
			s.outputs[r.ID] += "Release command succeeded.\n"
		} else {
			r.Status = "failed"
			r.UpdatedAt = s.now().UTC()
			s.outputs[r.ID] += "Release command failed.\n"
		}
		return nil
	}
	return fmt.Errorf("herokustub: app %q has no pending release", appName)
}

// ReleaseImage is the release-phase image the app's formation holds, or "".
func (s *Server) ReleaseImage(appName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appName]; a != nil {
		return a.releaseImage
	}
	return ""
}

// ExpireRelease marks a release expired, as Heroku does once its artifacts
// are destroyed (since 2025-10-01: older than 30 days and more than 20
// releases back; heroku.md "Retention"). It cannot be rolled back to.
func (s *Server) ExpireRelease(appName string, version int) error {
	return s.SetReleaseStatus(appName, version, "expired")
}

// SetReleaseStatus sets a release's status: pending, succeeded, failed,
// expired, or "" for the null status of legacy releases (heroku.md
// "Statuses"). It does not change which release is current.
func (s *Server) SetReleaseStatus(appName string, version int, status string) error {
	switch status {
	case "pending", "succeeded", "failed", "expired", "":
	default:
		return fmt.Errorf("herokustub: %q is not a release status", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appName]
	if a == nil {
		return fmt.Errorf("herokustub: no app %q", appName)
	}
	for _, r := range a.releases {
		if r.Version == version {
			r.Status, r.UpdatedAt = status, s.now().UTC()
			return nil
		}
	}
	return fmt.Errorf("herokustub: app %q has no release v%d", appName, version)
}

// RateLimitRemaining is what the next RateLimit-Remaining header would say
// before the call is counted.
func (s *Server) RateLimitRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refillLocked()
	return int(s.tokens)
}

// SetRateLimitRemaining sets the tokens left in the bucket.
func (s *Server) SetRateLimitRemaining(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refillLocked()
	s.tokens = min(float64(n), s.budget)
}

// Calls returns the requests answered so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// ResetCalls forgets the recorded requests.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

func (s *Server) refillLocked() {
	now := s.now()
	if el := now.Sub(s.last).Seconds(); el > 0 {
		s.tokens = min(s.budget, s.tokens+el*s.refill)
	}
	s.last = now
}

// takeToken spends one token; it returns the remaining whole tokens and
// false when the bucket was empty.
func (s *Server) takeToken() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refillLocked()
	if s.tokens < 1 {
		return 0, false
	}
	s.tokens--
	return int(s.tokens), true
}

// addRelease appends a release; status "succeeded" makes it current.
func (s *Server) addRelease(a *app, desc string, images map[string]string, status string) *Release {
	now := s.now().UTC()
	v := 1
	if n := len(a.releases); n > 0 {
		v = a.releases[n-1].Version + 1
	}
	r := &Release{ID: newID(), Version: v, Status: status, Description: desc,
		Images: copyMap(images), CreatedAt: now, UpdatedAt: now}
	a.releases = append(a.releases, r)
	if status == "succeeded" {
		s.makeCurrent(a, r)
	}
	return r
}

// makeCurrent makes r the running release and points the formation at its
// images. A release's images are the whole set it runs, so the release
// image is set or cleared with it.
// [U] A process type missing from r.Images (removed, or absent from a
// rolled-back-to release) keeps its formation entry.
func (s *Server) makeCurrent(a *app, r *Release) {
	now := s.now().UTC()
	for _, o := range a.releases {
		o.Current = false
	}
	r.Current, r.Status, r.UpdatedAt = true, "succeeded", now
	a.releasedAt = &now
	if r.Images != nil {
		a.stack = a.buildStack
		a.releaseImage = r.Images["release"]
	}
	for typ, img := range r.Images {
		if typ == "release" {
			continue
		}
		f := a.formation[typ]
		if f == nil {
			q := 0
			if typ == "web" {
				q = 1
			}
			f = &Formation{ID: newID(), Type: typ, Quantity: q, Size: defaultSize, CreatedAt: now}
			a.formation[typ] = f
		}
		f.DockerImage, f.UpdatedAt = img, now
	}
	s.syncDynos(a)
}

func sortedFormation(a *app) []Formation {
	out := make([]Formation, 0, len(a.formation))
	for _, f := range a.formation {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
