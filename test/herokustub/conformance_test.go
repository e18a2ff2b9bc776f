package herokustub

// Conformance tests: each behaviour names its source in
// shared/design/heroku.md. Choices marked [U] there are tested as the
// stand-in's choices, never as Heroku's.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

const bearer = "Bearer " + key

// push writes an amd64 Docker image to repo and returns its image ID.
func (f *fixture) push(t *testing.T, repo string) string {
	t.Helper()
	img := image(t, "amd64")
	if err := remote.Write(f.ref(t, repo), img, auth); err != nil {
		t.Fatalf("push %s: %v", repo, err)
	}
	id, _ := img.ConfigName()
	return id.String()
}

// release PATCHes the formation with docker images (type, image, …).
func (f *fixture) release(t *testing.T, app string, typeImages ...string) answer {
	t.Helper()
	var ups []string
	for i := 0; i+1 < len(typeImages); i += 2 {
		ups = append(ups, fmt.Sprintf(`{"type":%q,"docker_image":%q}`, typeImages[i], typeImages[i+1]))
	}
	return f.call(t, "PATCH", "/apps/"+app+"/formation", dockerReleases, bearer, `{"updates":[`+strings.Join(ups, ",")+`]}`)
}

func (f *fixture) latest(t *testing.T, app string) Release {
	t.Helper()
	rels := f.s.Releases(app)
	if len(rels) == 0 {
		t.Fatalf("%s has no releases", app)
	}
	return rels[len(rels)-1]
}

// errorBody decodes a Heroku error answer with its extras.
func errorBody(t *testing.T, a answer) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("not a Heroku error body: %s", a.body)
	}
	return m
}

// heroku.md "Generations": apps carry generation {id,name}; a Fir app's
// stack is always cnb and it takes no container images (Dev Center
// "Generations": "Docker and monorepo apps are unsupported on Fir").
func TestAppsCarryTheirGenerationAndFirTakesNoImages(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.CreateFirApp("firapp")
	for app, want := range map[string][2]string{"shop": {"cedar", "container"}, "firapp": {"fir", "cnb"}} {
		a := f.get(t, "/apps/"+app)
		var body struct {
			Stack      struct{ Name string }
			Generation struct{ ID, Name string }
		}
		if err := json.Unmarshal(a.body, &body); err != nil || a.status != 200 {
			t.Fatalf("%s: %d %s", app, a.status, a.body)
		}
		if body.Generation.Name != want[0] || body.Generation.ID == "" || body.Stack.Name != want[1] {
			t.Errorf("%s: generation %+v stack %q, want %v", app, body.Generation, body.Stack.Name, want)
		}
	}
	// Dev Center "Stacks": a Fir app's stack cannot be changed.
	f.s.SetStack("firapp", "container")
	f.s.SetBuildStack("firapp", "container")
	// [U] How Heroku refuses: the stand-in answers the registry with 401
	// (as for any repository the key cannot reach) and the PATCH with 422.
	var te *transport.Error
	if err := remote.Write(f.ref(t, "firapp/web"), image(t, "amd64"), auth); !errors.As(err, &te) || te.StatusCode != 401 {
		t.Errorf("push to a Fir app: %v", err)
	}
	web := f.push(t, "shop/web")
	if a := f.release(t, "firapp", "web", web); a.status != 422 {
		t.Errorf("docker release on Fir: %d %s", a.status, a.body)
	}
	if n := len(f.s.Releases("firapp")); n != 2 {
		t.Errorf("Fir app releases = %d, want Heroku's first two only", n)
	}
}

// heroku.md "Removing a type": PATCH /apps/{app}/formation/{type},
// docker-releases Accept, {"docker_image": null} (CLI container:rm);
// nothing else removes one: a type left out of a later release keeps its
// old image.
func TestRemovingAProcessType(t *testing.T) {
	f := newFixture(t, Options{})
	web, worker, rel := f.push(t, "shop/web"), f.push(t, "shop/worker"), f.push(t, "shop/release")
	if a := f.release(t, "shop", "web", web, "worker", worker, "release", rel); a.status != 200 {
		t.Fatalf("release: %d %s", a.status, a.body)
	}
	if err := f.s.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}
	// A later release of web alone keeps worker's and release's images.
	web2 := f.push(t, "shop/web")
	f.release(t, "shop", "web", web2)
	if imgs := f.latest(t, "shop").Images; imgs["worker"] != worker || imgs["release"] != rel || imgs["web"] != web2 {
		t.Errorf("a release of web alone runs %v", imgs)
	}
	if err := f.s.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}

	rm := func(typ, accept string) answer {
		return f.call(t, "PATCH", "/apps/shop/formation/"+typ, accept, bearer, `{"docker_image":null}`)
	}
	if a := rm("worker", v3); a.status != 422 {
		t.Errorf("removal without the docker-releases variant: %d %s", a.status, a.body)
	}
	before := len(f.s.Releases("shop"))
	if a := rm("worker", dockerReleases); a.status != 200 {
		t.Fatalf("container:rm worker: %d %s", a.status, a.body)
	}
	for _, fm := range f.s.Formation("shop") {
		if fm.Type == "worker" {
			t.Errorf("worker still in the formation: %+v", fm)
		}
	}
	// [U] Removal makes no release (the stand-in's choice).
	if n := len(f.s.Releases("shop")); n != before {
		t.Errorf("removal made %d releases", n-before)
	}
	// [U] A missing process type is not_found with resource "formation".
	if a := rm("worker", dockerReleases); a.status != 404 || errorBody(t, a)["resource"] != "formation" {
		t.Errorf("removing a missing type: %d %s", a.status, a.body)
	}
	// Removing release ends the release phase for later releases.
	if a := rm("release", dockerReleases); a.status != 200 || f.s.ReleaseImage("shop") != "" {
		t.Fatalf("container:rm release: %d %s", a.status, a.body)
	}
	bar := "bar"
	if err := f.s.SetConfigVars("shop", map[string]*string{"FOO": &bar}); err != nil {
		t.Fatal(err)
	}
	if last := f.latest(t, "shop"); last.Status != "succeeded" || !last.Current || last.Images["release"] != "" || last.Images["worker"] != "" {
		t.Errorf("config release after removals: %+v", last)
	}
}

// heroku.md "Release phase": it runs whenever a new release is created — a
// docker release, a user's config var change, a rollback — while the
// formation holds a release image, even when the request did not name
// release; dynos stay on the previous release until it succeeds (Dev
// Center "Release Phase").
func TestTheReleasePhaseRunsForEveryNewRelease(t *testing.T) {
	f := newFixture(t, Options{})
	web, rel := f.push(t, "shop/web"), f.push(t, "shop/release")
	f.release(t, "shop", "web", web, "release", rel)
	if err := f.s.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}
	deployed := f.latest(t, "shop")
	if f.s.ReleaseImage("shop") != rel {
		t.Fatalf("formation release image = %q", f.s.ReleaseImage("shop"))
	}
	pendingThenSucceed := func(what string) Release {
		t.Helper()
		last := f.latest(t, "shop")
		if last.Status != "pending" || last.Current || last.Images["release"] != rel {
			t.Errorf("%s: %+v, want pending with the release image", what, last)
		}
		a := f.get(t, "/apps/shop/releases/"+last.ID)
		var body struct {
			Status          string  `json:"status"`
			OutputStreamURL *string `json:"output_stream_url"`
		}
		_ = json.Unmarshal(a.body, &body)
		if body.Status != "pending" || body.OutputStreamURL == nil {
			t.Errorf("%s: answer %s", what, a.body)
		}
		if err := f.s.CompletePendingRelease("shop", true); err != nil {
			t.Fatal(err)
		}
		return last
	}

	// A user's config var change (the API and the Go helper).
	if a := f.call(t, "PATCH", "/apps/shop/config-vars", v3, bearer, `{"FOO":"1"}`); a.status != 200 {
		t.Fatalf("config-vars: %d %s", a.status, a.body)
	}
	pendingThenSucceed("config var change")
	// A docker release that does not name release.
	web2 := f.push(t, "shop/web")
	f.release(t, "shop", "web", web2)
	pendingThenSucceed("docker release of web alone")
	// A rollback (heroku-go schema "Release Rollback").
	a := f.call(t, "POST", "/apps/shop/releases", v3, bearer, fmt.Sprintf(`{"release":%q}`, deployed.ID))
	if a.status != 201 {
		t.Fatalf("rollback: %d %s", a.status, a.body)
	}
	back := pendingThenSucceed("rollback")
	if back.Images["web"] != web || back.Description != fmt.Sprintf("Rollback to v%d", deployed.Version) {
		t.Errorf("rollback release %+v", back)
	}
	if fm := f.s.Formation("shop"); len(fm) != 1 || fm[0].DockerImage != web {
		t.Errorf("formation after the rollback: %+v", fm)
	}
	// A failed release phase leaves the previous release current.
	f.s.SetConfigVars("shop", map[string]*string{"FOO": nil})
	if err := f.s.CompletePendingRelease("shop", false); err != nil {
		t.Fatal(err)
	}
	if cur := f.currentVersion("shop"); cur != back.Version {
		t.Errorf("current v%d after a failed release phase, want v%d", cur, back.Version)
	}
}

func (f *fixture) currentVersion(app string) int {
	for _, r := range f.s.Releases(app) {
		if r.Current {
			return r.Version
		}
	}
	return 0
}

// heroku.md "Per-type ignore": a type already running the requested image
// is not updated, the others in the same request are (heroku/cli#1167,
// #1965); all unchanged makes no release.
func TestDockerReleasesSkipOnlyTheUnchangedTypes(t *testing.T) {
	f := newFixture(t, Options{})
	web, worker := f.push(t, "shop/web"), f.push(t, "shop/worker")
	a := f.release(t, "shop", "web", web, "worker", worker)
	first := f.latest(t, "shop")
	if a.status != 200 || first.Version != 3 || len(a.header.Values("Warning-Message")) != 0 {
		t.Fatalf("first release: %d %s %+v", a.status, a.body, first)
	}
	// heroku.md "Description": one type is "Deployed web (<12 hex>)".
	web2 := f.push(t, "shop/web")
	a = f.release(t, "shop", "web", web2, "worker", worker)
	second := f.latest(t, "shop")
	if second.Version != 4 || second.Images["web"] != web2 || second.Images["worker"] != worker {
		t.Fatalf("second release %+v", second)
	}
	if want := "Deployed web (" + strings.TrimPrefix(web2, "sha256:")[:12] + ")"; second.Description != want {
		t.Errorf("description %q, want %q", second.Description, want)
	}
	// [U] The stand-in names each skipped type in a Warning-Message header,
	// in the CLI's words.
	want := "The process type worker was not updated, because it is already running the specified docker image."
	if got := a.header.Values("Warning-Message"); len(got) != 1 || got[0] != want {
		t.Errorf("warnings %q", got)
	}
	a = f.release(t, "shop", "web", web2, "worker", worker)
	if n := len(f.s.Releases("shop")); a.status != 200 || n != 4 || len(a.header.Values("Warning-Message")) != 2 {
		t.Errorf("all unchanged: %d, %d releases, warnings %q", a.status, n, a.header.Values("Warning-Message"))
	}
	// Other descriptions can be replayed ([U] heroku.md: the multi-type
	// text is unknown).
	g := newFixture(t, Options{Describe: func(map[string]string) string { return "Deployed web, worker" }})
	g.release(t, "shop", "web", g.push(t, "shop/web"))
	if d := g.latest(t, "shop").Description; d != "Deployed web, worker" {
		t.Errorf("Describe option ignored: %q", d)
	}
}

// heroku.md "Statuses" and "Retention": expired (artifacts destroyed,
// cannot be rolled back to) and the null status of legacy releases.
func TestExpiredAndNullStatuses(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.s.ExpireRelease("shop", 1); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetReleaseStatus("shop", 2, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.s.SetReleaseStatus("shop", 2, "done"); err == nil {
		t.Error("an unknown status was set")
	}
	a := f.get(t, "/apps/shop/releases", "Range", "version ..; max=10")
	var rels []map[string]any
	if err := json.Unmarshal(a.body, &rels); err != nil || len(rels) != 2 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if rels[0]["status"] != "expired" {
		t.Errorf("v1 status %v", rels[0]["status"])
	}
	if st, ok := rels[1]["status"]; !ok || st != nil {
		t.Errorf("v2 status %v (present %v), want null", st, ok)
	}
	// [U] The refusal's status and text are the stand-in's.
	if a := f.call(t, "POST", "/apps/shop/releases", v3, bearer, `{"release":"1"}`); a.status != 422 {
		t.Errorf("rollback to an expired release: %d %s", a.status, a.body)
	}
	if a := f.call(t, "POST", "/apps/shop/releases", v3, bearer, `{"release":"99"}`); a.status != 404 || errorBody(t, a)["resource"] != "release" {
		t.Errorf("rollback to a missing release: %d %s", a.status, a.body)
	}
}

// heroku.md "Ranges": "]a.." is an exclusive start; a start is a bound, not
// a key that must exist; a truncated page is 206 with Next-Range in the
// exclusive form, 200 otherwise; Content-Range describes the page; a bad
// range is 416; default page 200, max 1000.
func TestRangesPageAsHerokuDoes(t *testing.T) {
	f := newFixture(t, Options{BareApps: true})
	v := "x"
	for range 250 {
		if err := f.s.SetConfigVars("shop", map[string]*string{"X": &v}); err != nil {
			t.Fatal(err)
		}
	}
	page := func(rng string) (answer, []int) {
		t.Helper()
		a := f.get(t, "/apps/shop/releases", "Range", rng)
		var rels []struct{ Version int }
		if a.status/100 == 2 {
			if err := json.Unmarshal(a.body, &rels); err != nil {
				t.Fatalf("%s", a.body)
			}
		}
		var out []int
		for _, r := range rels {
			out = append(out, r.Version)
		}
		return a, out
	}
	// Without Range: 200 releases, sorted on id.
	a, vs := page("")
	if a.status != 206 || len(vs) != 200 || !strings.HasPrefix(a.header.Get("Content-Range"), "id ") || !strings.HasPrefix(a.header.Get("Next-Range"), "id ]") {
		t.Errorf("default page: %d, %d releases, Content-Range %q", a.status, len(vs), a.header.Get("Content-Range"))
	}
	a, vs = page("version ..; max=200")
	if next := a.header.Get("Next-Range"); a.status != 206 || len(vs) != 200 || vs[199] != 200 || next != "version ]200..; max=200" {
		t.Fatalf("first page: %d, %d releases, Next-Range %q", a.status, len(vs), next)
	}
	a, vs = page(a.header.Get("Next-Range"))
	if a.status != 200 || len(vs) != 50 || vs[0] != 201 || vs[49] != 250 || a.header.Get("Next-Range") != "" {
		t.Errorf("last page: %d %d from v%d, Next-Range %q", a.status, len(vs), vs[0], a.header.Get("Next-Range"))
	}
	if _, vs = page("version ]41..45; max=50"); len(vs) != 4 || vs[0] != 42 {
		t.Errorf("exclusive start: %v", vs)
	}
	if _, vs = page("version 41..45; max=50"); len(vs) != 5 || vs[0] != 41 {
		t.Errorf("inclusive start: %v", vs)
	}
	a, vs = page("version ]248..; max=1, order=desc")
	if a.status != 206 || len(vs) != 1 || vs[0] != 247 || a.header.Get("Next-Range") != "version ]247..; max=1, order=desc" {
		t.Errorf("descending from an exclusive start: %d %v %q", a.status, vs, a.header.Get("Next-Range"))
	}
	// A start is a bound: version 999 need not exist.
	if a, vs = page("version ]999..; max=10"); a.status != 200 || len(vs) != 0 {
		t.Errorf("start past the end: %d %v", a.status, vs)
	}
	if _, vs = page("version 999..; max=3, order=desc"); len(vs) != 3 || vs[0] != 250 {
		t.Errorf("descending from a missing version: %v", vs)
	}
	rels := f.s.Releases("shop")
	if _, vs = page("id ]" + rels[0].ID[:1] + "..; max=1000"); len(vs) == 0 {
		t.Errorf("id bound that is no id: %v", vs)
	}
	a, _ = page("version ..; max=1000")
	if a.status != 200 {
		t.Errorf("max=1000: %d", a.status)
	}
	for _, bad := range []string{"version ..; max=1001", "color ..; max=1", "version a..; max=1", "version ..; max=0", "version ..; order=up"} {
		if a, _ := page(bad); a.status != 416 || errorBody(t, a)["id"] != "requested_range_not_satisfiable" {
			t.Errorf("%q: %d %s", bad, a.status, a.body)
		}
	}
}

// heroku.md "Platform API in general": not_found names its resource;
// missing_version uses the "error" key; 429 carries url and Heroku's
// message; Accept variants such as 3.sdk are served.
func TestErrorsAsHerokuWritesThem(t *testing.T) {
	f := newFixture(t, Options{})
	for path, resource := range map[string]string{
		"/apps/nope":                "app",
		"/apps/shop/releases/99":    "release",
		"/apps/shop/formation/nope": "formation", // [U] the resource name
	} {
		a := f.get(t, path)
		if b := errorBody(t, a); a.status != 404 || b["id"] != "not_found" || b["resource"] != resource || b["message"] == "" {
			t.Errorf("%s: %d %s, want resource %q", path, a.status, a.body, resource)
		}
	}
	a := f.call(t, "GET", "/apps/shop", "application/json", bearer, "")
	if b := errorBody(t, a); a.status != 400 || b["id"] != "missing_version" || b["error"] == "" {
		t.Errorf("missing version: %d %s", a.status, a.body)
	}
	f.s.SetRateLimitRemaining(0)
	a = f.get(t, "/apps/shop")
	b := errorBody(t, a)
	if a.status != 429 || b["id"] != "rate_limit" || b["url"] != "https://devcenter.heroku.com/articles/platform-api-reference#rate-limits" ||
		b["message"] != "Your account reached the API rate limit\nPlease wait a few minutes before making new requests" {
		t.Errorf("429: %s", a.body)
	}
	f.s.SetRateLimitRemaining(100)
	for _, accept := range []string{"application/vnd.heroku+json; version=3.sdk", dockerReleases, v3} {
		if a := f.call(t, "GET", "/apps/shop/releases", accept, bearer, ""); a.status != 200 {
			t.Errorf("Accept %q: %d %s", accept, a.status, a.body)
		}
	}
}

// heroku.md "Heroku's own clients": ps:scale sends quantity as a string
// ("2", "+1"); heroku-go sends a number.
func TestScaleTakesTheCLIsStringQuantities(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.SetFormation("shop", Formation{Type: "web", Quantity: 1})
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"updates":[{"type":"web","quantity":"2"}]}`, 2},
		{`{"updates":[{"type":"web","quantity":"+1"}]}`, 3},
		{`{"updates":[{"type":"web","quantity":"-2"}]}`, 1},
		{`{"updates":[{"type":"web","quantity":4}]}`, 4},
	} {
		a := f.call(t, "PATCH", "/apps/shop/formation", v3, bearer, tc.body)
		if got := f.s.Formation("shop")[0].Quantity; a.status != 200 || got != tc.want {
			t.Errorf("%s: %d %s, quantity %d want %d", tc.body, a.status, a.body, got, tc.want)
		}
	}
	for _, bad := range []string{`"two"`, `"-9"`, `true`} {
		a := f.call(t, "PATCH", "/apps/shop/formation", v3, bearer, `{"updates":[{"type":"web","quantity":`+bad+`}]}`)
		if a.status != http.StatusUnprocessableEntity {
			t.Errorf("quantity %s: %d", bad, a.status)
		}
	}
}
