package heroku

// Tests of the client against the stand-in for the facts in
// shared/design/heroku.md, and of Heroku's own Go clients (heroku-go v5,
// the project's dependency, and v6.1.0, whose schema has "generation") as
// real clients of the stand-in.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	hk "github.com/heroku/heroku-go/v5"
	hk6 "github.com/heroku/heroku-go/v6"

	"github.com/herokunix/herokunix/test/herokustub"
)

// heroku.md "Generations": GET /apps/{app} carries generation; a Fir app
// cannot take container images and `heroku stack:set container` cannot
// help it.
func TestAppReadsTheGenerationAndRefusesFir(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	e.stub.CreateFirApp("firapp")

	a, err := e.client.App(t.Context(), "shop")
	if err != nil || a.Generation != GenerationCedar || a.Stack != "container" {
		t.Fatalf("Cedar app: %+v %v", a, err)
	}
	e.stub.ResetCalls()
	_, err = e.client.App(t.Context(), "firapp")
	var ge *GenerationError
	if !errors.As(err, &ge) || !errors.Is(err, ErrUnsupportedGeneration) || ge.Generation != GenerationFir {
		t.Fatalf("Fir app: %v", err)
	}
	var se *StackError
	if errors.As(err, &se) || strings.Contains(err.Error(), "stack:set") {
		t.Errorf("a Fir app is told to change stacks: %v", err)
	}
	if calls := e.stub.Calls(); len(calls) != 1 || calls[0].Path != "/apps/firapp" {
		t.Errorf("calls for a Fir app: %+v", calls)
	}
	info, err := e.client.AppInfo(t.Context(), "firapp")
	if err != nil || info.CheckContainerReady() == nil || info.Stack != "cnb" {
		t.Errorf("AppInfo: %+v %v", info, err)
	}
}

// herokuGoClient authenticates as heroku-go does: a Bearer token.
func herokuGoClient() *http.Client {
	return &http.Client{Transport: &hk.Transport{BearerToken: testKey}}
}

// heroku.md "Generations": the field is in heroku-go v6's schema and App
// struct. v6 reads the stand-in's answer as Heroku's.
func TestHerokuGoV6ReadsTheGeneration(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateFirApp("firapp")
	svc := hk6.NewService(&http.Client{Transport: &hk6.Transport{BearerToken: testKey}})
	svc.URL = e.api.URL
	a, err := svc.AppInfo(context.Background(), "firapp")
	if err != nil {
		t.Fatal(err)
	}
	if a.Generation.Name != "fir" || a.Generation.ID == "" || a.Stack.Name != "cnb" {
		t.Errorf("v6 App: generation %+v stack %q", a.Generation, a.Stack.Name)
	}
}

// heroku-go v5, the project's dependency, drives the stand-in: app info,
// a ranged release list as it writes Range ("max=2,order=desc"), scaling,
// rollback, and its error type for a missing app.
func TestHerokuGoV5IsAClientOfTheStandIn(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	web := e.push(t, "shop/web")
	if _, _, err := e.client.ReleaseImages(t.Context(), "shop", map[string]string{"web": web}); err != nil {
		t.Fatal(err)
	}
	svc := hk.NewService(herokuGoClient())
	svc.URL = e.api.URL
	ctx := context.Background()
	if a, err := svc.AppInfo(ctx, "shop"); err != nil || a.Stack.Name != "container" {
		t.Fatalf("AppInfo: %+v %v", a, err)
	}
	rels, err := svc.ReleaseList(ctx, "shop", &hk.ListRange{Field: "version", Max: 2, Descending: true})
	if err != nil || len(rels) != 2 || rels[0].Version != 3 || rels[1].Version != 2 {
		t.Fatalf("ReleaseList: %+v %v", rels, err)
	}
	q := 3
	if _, err := svc.FormationUpdate(ctx, "shop", "web", hk.FormationUpdateOpts{Quantity: &q}); err != nil {
		t.Fatalf("FormationUpdate: %v", err)
	}
	if fm := e.stub.Formation("shop"); len(fm) != 1 || fm[0].Quantity != 3 {
		t.Errorf("formation %+v", fm)
	}
	back, err := svc.ReleaseRollback(ctx, "shop", hk.ReleaseRollbackOpts{Release: rels[1].ID})
	if err != nil || back.Version != 4 || back.Description != "Rollback to v2" {
		t.Fatalf("ReleaseRollback: %+v %v", back, err)
	}
	_, err = svc.AppInfo(ctx, "nope")
	var he hk.Error
	if !errors.As(err, &he) || he.ID != "not_found" || he.StatusCode != 404 {
		t.Errorf("missing app: %#v", err)
	}
}

// heroku.md "Removing a type" and "Errors": container:rm's PATCH; a
// missing process type is not_found whose resource is not "app".
func TestRemoveProcessType(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	images := map[string]string{"web": e.push(t, "shop/web"), "worker": e.push(t, "shop/worker"), "release": e.push(t, "shop/release")}
	if _, _, err := e.client.ReleaseImages(t.Context(), "shop", images); err != nil {
		t.Fatal(err)
	}
	if err := e.stub.CompletePendingRelease("shop", true); err != nil {
		t.Fatal(err)
	}
	e.stub.ResetCalls()
	if err := e.client.RemoveProcessType(t.Context(), "shop", "release"); err != nil {
		t.Fatal(err)
	}
	calls := e.apiCalls()
	if len(calls) != 1 || calls[0].Method != "PATCH" || calls[0].Path != "/apps/shop/formation/release" || calls[0].Accept != acceptDockerReleases {
		t.Errorf("calls %+v", calls)
	}
	if e.stub.ReleaseImage("shop") != "" {
		t.Error("the release image stayed")
	}
	if err := e.client.RemoveProcessType(t.Context(), "shop", "worker"); err != nil {
		t.Fatal(err)
	}
	err := e.client.RemoveProcessType(t.Context(), "shop", "worker")
	if !errors.Is(err, ErrNotFound) || IsNotFound(err, "app") || !IsNotFound(err, "formation") {
		t.Errorf("removing a missing type: %v", err)
	}
	if err := e.client.RemoveProcessType(t.Context(), "nope", "web"); !IsNotFound(err, "app") {
		t.Errorf("removing from a missing app: %v", err)
	}
	if _, err := e.client.Release(t.Context(), "shop", "99"); !IsNotFound(err, "release") || IsNotFound(err, "app") {
		t.Errorf("a missing release: %v", err)
	}
	if err := e.client.RemoveProcessType(t.Context(), "shop", "no/such"); err == nil {
		t.Error("an invalid type was sent")
	}
}

// heroku.md "Ranges": the releases after ours, however many were made
// since, read with exclusive starts and Next-Range.
func TestReleasesAfterReadsEveryNewerRelease(t *testing.T) {
	e := newEnv(t, func(_ *herokustub.Options, co *Options) { co.RequestsPerHour = 4500 })
	e.stub.CreateApp("shop", "container")
	v := "1"
	for range 1203 {
		if err := e.stub.SetConfigVars("shop", map[string]*string{"X": &v}); err != nil {
			t.Fatal(err)
		}
	}
	e.stub.ResetCalls()
	rels, err := e.client.ReleasesAfter(t.Context(), "shop", 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 1201 || rels[0].Version != 5 || rels[len(rels)-1].Version != 1205 {
		t.Fatalf("%d releases, v%d..v%d", len(rels), rels[0].Version, rels[len(rels)-1].Version)
	}
	for i := 1; i < len(rels); i++ {
		if rels[i].Version != rels[i-1].Version+1 {
			t.Fatalf("gap or repeat at v%d", rels[i].Version)
		}
	}
	calls := e.apiCalls()
	if len(calls) != 2 || calls[0].Range != "version ]4..; max=1000" || calls[1].Range != "version ]1004..; max=1000" {
		t.Errorf("calls %+v", calls)
	}
	if rels, err := e.client.ReleasesAfter(t.Context(), "shop", 1205); err != nil || len(rels) != 0 {
		t.Errorf("after the latest: %+v %v", rels, err)
	}
}

// heroku.md "Statuses": expired and the legacy null status are decoded and
// never count as success.
func TestExpiredAndNullStatusesAreNotSuccess(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	if err := e.stub.ExpireRelease("shop", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.stub.SetReleaseStatus("shop", 2, ""); err != nil {
		t.Fatal(err)
	}
	rels, err := e.client.ReleasesAfter(t.Context(), "shop", 0)
	if err != nil || len(rels) != 2 {
		t.Fatalf("%+v %v", rels, err)
	}
	if rels[0].Status != ReleaseExpired || rels[0].Succeeded() {
		t.Errorf("expired release %+v", rels[0])
	}
	if rels[1].Status != "" || rels[1].Succeeded() {
		t.Errorf("null-status release %+v", rels[1])
	}
	if _, err := e.client.Rollback(t.Context(), "shop", rels[0].ID); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("rollback to an expired release: %v", err)
	}
	back, err := e.client.Rollback(t.Context(), "shop", rels[1].ID)
	if err != nil || back.Version != 3 || !back.Succeeded() {
		t.Errorf("rollback: %+v %v", back, err)
	}
}

// heroku.md "Platform API in general": missing_version's text is under
// "error"; a 429 carries url.
func TestErrorBodiesKeepHerokusExtras(t *testing.T) {
	e := parseError(400, http.Header{}, []byte(`{"id":"missing_version","error":"Please specify a version"}`), newFakeClock().Now())
	if e.ID != "missing_version" || e.Message != "Please specify a version" {
		t.Errorf("missing_version: %+v", e)
	}
	env := newEnv(t)
	env.stub.CreateApp("shop", "container")
	env.stub.SetRateLimitRemaining(0)
	_, err := env.client.App(t.Context(), "shop")
	var he *Error
	if !errors.As(err, &he) || he.Kind != KindRateLimited || he.URL != "https://devcenter.heroku.com/articles/platform-api-reference#rate-limits" {
		t.Errorf("429: %#v", err)
	}
}

// heroku.md "Platform API in general": PATCH /apps/{app}/config-vars, null
// deletes, each change a release.
func TestConfigVarsAreSetAndNullDeletesEachChangeARelease(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	ctx := t.Context()
	one, two := "1", "2"
	before := len(e.stub.Releases("shop"))
	if err := e.client.UpdateConfigVars(ctx, "shop", map[string]*string{"A": &one, "B": &two}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.UpdateConfigVars(ctx, "shop", map[string]*string{"A": nil}); err != nil {
		t.Fatal(err)
	}
	vars, err := e.client.ConfigVars(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 1 || vars["B"] != "2" {
		t.Errorf("config vars %v, want B=2 alone", vars)
	}
	rels := e.stub.Releases("shop")[before:]
	if len(rels) != 2 || rels[0].Description != "Set A, B config vars" || rels[1].Description != "Remove A config vars" {
		t.Errorf("releases %+v, want one per change", rels)
	}
	e.stub.ResetCalls()
	if err := e.client.UpdateConfigVars(ctx, "shop", nil); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("an empty change: %v", err)
	}
	if calls := e.apiCalls(); len(calls) != 0 {
		t.Errorf("an empty change was sent: %+v", calls)
	}
	if _, err := e.client.ConfigVars(ctx, "nope"); !IsNotFound(err, "app") {
		t.Errorf("a missing app: %v", err)
	}
}
