package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
)

// fakeHeroku is one Heroku app in memory: its release history (the
// current one runs), the images each release runs, and the formation.
// SendImages follows Heroku's per-type ignore: a type already running the
// requested image is skipped, and no change makes no release. Errors set in
// err are returned by the named method ("App", "SendImages",
// "CurrentRelease", "Release", "ReleasesAfter", "RemoveProcessType",
// "Formation", "ScaleFormation").
type fakeHeroku struct {
	stack      string
	generation string
	releases   []*heroku.Release
	// images are the short image IDs (12 hex) each release runs, by version.
	images    map[int]map[string]string
	formation []heroku.Formation
	// pendingReleases makes new releases start their release phase.
	pendingReleases bool
	err             map[string]error
	writes          []string
	removed         []string
	// appReads counts App calls, releaseLists ReleasesAfter calls.
	appReads, releaseLists int
	// configVars are the app's config vars; a change makes a release
	// described as Heroku does ("Set A, B config vars").
	configVars map[string]string
	// configReads counts ConfigVars calls.
	configReads int
	// dynoState is the state of the web dyno of the current release
	// (default up); dynoReads counts Dynos calls.
	dynoState string
	dynoReads int
	// outputs are the release-phase outputs by stream URL; a URL missing
	// answers ErrNoOutput.
	outputs map[string]string
}

var _ HerokuAPI = (*fakeHeroku)(nil)

func newFakeHeroku() *fakeHeroku {
	return &fakeHeroku{stack: "container", err: map[string]error{}, images: map[int]map[string]string{}}
}

func (f *fakeHeroku) App(_ context.Context, app string) (*heroku.App, error) {
	f.appReads++
	if err := f.err["App"]; err != nil {
		return nil, err
	}
	a := &heroku.App{ID: "id-" + app, Name: app, Stack: f.stack, BuildStack: f.stack, Generation: f.generation, WebURL: "https://" + app + ".herokuapp.com/"}
	if err := a.CheckContainerReady(); err != nil {
		return nil, err
	}
	return a, nil
}

// release appends a release as a test describes it: a "Deployed t (id),
// …" release runs those images over the current ones; any other (config
// vars, add-ons) runs the current images. A succeeded release is current.
func (f *fakeHeroku) release(description, status string) *heroku.Release {
	imgs := maps.Clone(f.running())
	if imgs == nil {
		imgs = map[string]string{}
	}
	if rest, ok := strings.CutPrefix(description, "Deployed "); ok {
		for _, part := range strings.Split(rest, ", ") {
			typ, id, _ := strings.Cut(strings.TrimSuffix(part, ")"), " (")
			imgs[typ] = id
		}
	}
	rel := &heroku.Release{ID: fmt.Sprintf("rel-%d", len(f.releases)+1), Version: len(f.releases) + 1,
		Status: status, Description: description, CreatedAt: testTime}
	if status == heroku.ReleaseSucceeded {
		for _, r := range f.releases {
			r.Current = false
		}
		rel.Current = true
	}
	f.releases = append(f.releases, rel)
	f.images[rel.Version] = imgs
	return rel
}

// running is what the current release runs.
func (f *fakeHeroku) running() map[string]string {
	for _, r := range slices.Backward(f.releases) {
		if r.Current {
			return f.images[r.Version]
		}
	}
	return nil
}

func (f *fakeHeroku) latest() *heroku.Release {
	if len(f.releases) == 0 {
		return nil
	}
	return f.releases[len(f.releases)-1]
}

func (f *fakeHeroku) CurrentRelease(context.Context, string) (*heroku.Release, error) {
	if err := f.err["CurrentRelease"]; err != nil {
		return nil, err
	}
	if l := f.latest(); l != nil {
		c := *l
		return &c, nil
	}
	return nil, nil
}

// SendImages releases the types whose image differs from what the current
// release runs, in one release; none differing makes none.
func (f *fakeHeroku) SendImages(_ context.Context, _ string, images map[string]string) error {
	if err := f.err["SendImages"]; err != nil {
		return err
	}
	f.writes = append(f.writes, "release")
	changed := map[string]string{}
	for typ, id := range images {
		if short := strings.TrimPrefix(id, "sha256:")[:12]; f.running()[typ] != short {
			changed[typ] = id
		}
	}
	if len(changed) == 0 {
		return nil
	}
	status := heroku.ReleaseSucceeded
	if f.pendingReleases {
		status = heroku.ReleasePending
	}
	f.release(deployDescription(changed), status)
	return nil
}

func deployDescription(images map[string]string) string {
	var parts []string
	for _, typ := range slices.Sorted(maps.Keys(images)) {
		parts = append(parts, fmt.Sprintf("%s (%s)", typ, strings.TrimPrefix(images[typ], "sha256:")[:12]))
	}
	return "Deployed " + strings.Join(parts, ", ")
}

func (f *fakeHeroku) Release(_ context.Context, _, id string) (*heroku.Release, error) {
	if err := f.err["Release"]; err != nil {
		return nil, err
	}
	for _, r := range f.releases {
		if r.ID == id {
			c := *r
			return &c, nil
		}
	}
	return nil, &heroku.Error{Kind: heroku.KindNotFound, ID: "not_found", Resource: "release"}
}

func (f *fakeHeroku) ReleasesAfter(_ context.Context, _ string, version int) ([]*heroku.Release, error) {
	f.releaseLists++
	if err := f.err["ReleasesAfter"]; err != nil {
		return nil, err
	}
	var out []*heroku.Release
	for _, r := range f.releases {
		if r.Version > version {
			c := *r
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fakeHeroku) RemoveProcessType(_ context.Context, _, typ string) error {
	if err := f.err["RemoveProcessType"]; err != nil {
		return err
	}
	f.writes = append(f.writes, "remove "+typ)
	f.removed = append(f.removed, typ)
	return nil
}

func (f *fakeHeroku) Formation(context.Context, string) ([]heroku.Formation, error) {
	if err := f.err["Formation"]; err != nil {
		return nil, err
	}
	return slices.Clone(f.formation), nil
}

// Dynos lists one web dyno, web.1 of the current release, in dynoState.
func (f *fakeHeroku) Dynos(context.Context, string) ([]heroku.Dyno, error) {
	f.dynoReads++
	if err := f.err["Dynos"]; err != nil {
		return nil, err
	}
	state := f.dynoState
	if state == "" {
		state = heroku.DynoUp
	}
	for _, r := range slices.Backward(f.releases) {
		if r.Current {
			return []heroku.Dyno{{Name: "web.1", Type: "web", State: state, ReleaseVersion: r.Version}}, nil
		}
	}
	return nil, nil
}

func (f *fakeHeroku) ReleaseOutput(_ context.Context, url string) (string, error) {
	out, ok := f.outputs[url]
	if !ok {
		return "", heroku.ErrNoOutput
	}
	return out, nil
}

func (f *fakeHeroku) ScaleFormation(_ context.Context, _ string, updates []heroku.Formation) error {
	if err := f.err["ScaleFormation"]; err != nil {
		return err
	}
	f.writes = append(f.writes, "scale")
	for _, u := range updates {
		i := slices.IndexFunc(f.formation, func(f heroku.Formation) bool { return f.Type == u.Type })
		if i < 0 {
			f.formation = append(f.formation, heroku.Formation{Type: u.Type})
			i = len(f.formation) - 1
		}
		if u.Quantity >= 0 {
			f.formation[i].Quantity = u.Quantity
		}
		if u.Size != "" {
			f.formation[i].Size = u.Size
		}
	}
	sort.Slice(f.formation, func(i, j int) bool { return f.formation[i].Type < f.formation[j].Type })
	return nil
}

// fakeBuilder answers Ensure with state and records what it was asked.
type fakeBuilder struct {
	state     build.State
	err       error
	ensured   []string
	cancelled []string
}

func (b *fakeBuilder) Ensure(_ context.Context, _ *herokunixv1.HerokuNixApp, d build.Desired, _ string) (build.State, error) {
	b.ensured = append(b.ensured, d.Name)
	return b.state, b.err
}

func (b *fakeBuilder) CancelOthers(_ context.Context, _ *herokunixv1.HerokuNixApp, keep string) error {
	b.cancelled = append(b.cancelled, keep)
	return nil
}

func (b *fakeBuilder) PollInterval() time.Duration { return 5 * time.Second }

// eventLog records events as "Type Reason: message".
type eventLog struct{ events []string }

func (l *eventLog) Eventf(_ runtime.Object, _ runtime.Object, typ, reason, _ string, note string, args ...any) {
	l.events = append(l.events, typ+" "+reason+": "+fmt.Sprintf(note, args...))
}

func (l *eventLog) reasons() []string {
	var out []string
	for _, e := range l.events {
		typ, rest, _ := strings.Cut(e, " ")
		reason, _, _ := strings.Cut(rest, ":")
		out = append(out, typ+" "+reason)
	}
	return out
}

const testAPIKey = "hk-test-key"

// fakeWorld is a reconciler on controller-runtime's fake client (with the
// field index the steps list by), a fake Heroku and a fake builder.
type fakeWorld struct {
	r      *HerokuNixAppReconciler
	c      client.Client
	heroku *fakeHeroku
	build  *fakeBuilder
	events *eventLog
}

func newFakeWorld(t *testing.T, objs ...client.Object) *fakeWorld {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := herokunixv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: "team-a"}, Data: map[string][]byte{"apiKey": []byte(testAPIKey)}}
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(append(objs, secret)...).
		WithStatusSubresource(&herokunixv1.HerokuNixApp{}).
		WithIndex(&herokunixv1.HerokuNixApp{}, indexAppName, func(o client.Object) []string {
			return []string{o.(*herokunixv1.HerokuNixApp).Spec.AppName}
		}).Build()
	w := &fakeWorld{c: c, heroku: newFakeHeroku(), build: &fakeBuilder{}, events: &eventLog{}}
	w.r = &HerokuNixAppReconciler{
		Client: c, APIReader: c, Recorder: w.events, Builder: w.build,
		Heroku: &HerokuClients{New: func(key string) (HerokuAPI, error) {
			if key != testAPIKey {
				return nil, fmt.Errorf("unexpected key")
			}
			return w.heroku, nil
		}},
		Now: func() time.Time { return testTime },
	}
	return w
}

// pass is a pass over app with credentials read, as the steps before the
// build leave it.
func (w *fakeWorld) pass(t *testing.T, app *herokunixv1.HerokuNixApp) *pass {
	t.Helper()
	p := &pass{app: app, now: testTime}
	if err := w.r.reconcileCredentials(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// condition returns "Status Reason" of a condition, or "" when absent.
func condition(app *herokunixv1.HerokuNixApp, typ string) string {
	c := findCondition(app, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + " " + c.Reason
}

func (f *fakeHeroku) ConfigVars(context.Context, string) (map[string]string, error) {
	f.configReads++
	if err := f.err["ConfigVars"]; err != nil {
		return nil, err
	}
	return maps.Clone(f.configVars), nil
}

func (f *fakeHeroku) UpdateConfigVars(_ context.Context, _ string, vars map[string]*string) error {
	if err := f.err["UpdateConfigVars"]; err != nil {
		return err
	}
	f.writes = append(f.writes, "config")
	if f.configVars == nil {
		f.configVars = map[string]string{}
	}
	var set, removed []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if v := vars[k]; v != nil {
			f.configVars[k] = *v
			set = append(set, k)
		} else {
			delete(f.configVars, k)
			removed = append(removed, k)
		}
	}
	status := heroku.ReleaseSucceeded
	if f.pendingReleases {
		status = heroku.ReleasePending
	}
	if len(set) > 0 {
		f.release("Set "+strings.Join(set, ", ")+" config vars", status)
	} else {
		f.release("Remove "+strings.Join(removed, ", ")+" config vars", status)
	}
	return nil
}
