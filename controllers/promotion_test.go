package controllers

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

func TestPromotableOnlyWhenTheSourceRunsItsImages(t *testing.T) {
	ready := func() *herokunixv1.HerokuNixApp {
		return &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: herokunixv1.HerokuNixAppStatus{
				ObservedGeneration: 2, Revision: "abc",
				Conditions: []metav1.Condition{{Type: herokunixv1.ConditionReady, Status: metav1.ConditionTrue}},
				Images:     map[string]herokunixv1.ImageStatus{"web": {ImageID: "sha256:1", Digest: "sha256:m"}},
				Release:    &herokunixv1.ReleaseStatus{Status: heroku.ReleaseSucceeded, Images: map[string]string{"web": "sha256:1"}},
			},
		}
	}
	if rev, ok := promotable(ready()); !ok || rev != "abc" {
		t.Fatalf("a Ready source: %q %v", rev, ok)
	}
	for name, spoil := range map[string]func(*herokunixv1.HerokuNixApp){
		"not Ready":                     func(a *herokunixv1.HerokuNixApp) { a.Status.Conditions[0].Status = metav1.ConditionFalse },
		"Ready for an older generation": func(a *herokunixv1.HerokuNixApp) { a.Generation = 3 },
		"release pending":               func(a *herokunixv1.HerokuNixApp) { a.Status.Release.Status = heroku.ReleasePending },
		"built images not released": func(a *herokunixv1.HerokuNixApp) {
			a.Status.Images["web"] = herokunixv1.ImageStatus{ImageID: "sha256:2"}
		},
		"release in flight": func(a *herokunixv1.HerokuNixApp) { a.Status.ReleaseIntent = &herokunixv1.ReleaseIntent{} },
		"never released":    func(a *herokunixv1.HerokuNixApp) { a.Status.Release = nil },
	} {
		a := ready()
		spoil(a)
		if _, ok := promotable(a); ok {
			t.Errorf("%s: promotable", name)
		}
	}
}

func TestReconcilePromotionBeforeAnyCopy(t *testing.T) {
	ctx := context.Background()
	target := func() *herokunixv1.HerokuNixApp {
		app := testApp()
		app.Name, app.Spec.AppName, app.UID = "production", "acme-shop-prod", "uid-production"
		app.Spec.Flake, app.Spec.Processes = "", nil
		app.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging", RequireApproval: true}
		return app
	}
	source := func(appName string, ready bool) *herokunixv1.HerokuNixApp {
		src := testApp()
		src.Name, src.Spec.AppName, src.UID = "staging", appName, "uid-staging"
		src.Status.Revision = "9f2c1e0aa1b2c3d4"
		src.Status.Images = map[string]herokunixv1.ImageStatus{"web": {ImageID: "sha256:1", Digest: "sha256:m"}}
		src.Status.Release = &herokunixv1.ReleaseStatus{Status: heroku.ReleaseSucceeded, Images: map[string]string{"web": "sha256:1"}}
		if ready {
			src.Status.Conditions = []metav1.Condition{{Type: herokunixv1.ConditionReady, Status: metav1.ConditionTrue}}
		}
		return src
	}
	for _, tc := range []struct {
		name   string
		objs   []client.Object
		reason string
		stall  bool
	}{
		{"no source", nil, herokunixv1.ReasonPromotionSourceNotFound, true},
		{"a source deploying the same Heroku app", []client.Object{source("acme-shop-prod", true)}, herokunixv1.ReasonPromotionSourceNotFound, true},
		{"a source not Ready", []client.Object{source("acme-shop", false)}, herokunixv1.ReasonPromotionSourceNotReady, false},
		{"a Ready source not approved", []client.Object{source("acme-shop", true)}, herokunixv1.ReasonPromotionAwaitingApproval, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld(t, tc.objs...)
			app := target()
			err := w.r.reconcileImages(ctx, w.pass(t, app))
			var se *stepError
			var wt *waiting
			switch {
			case tc.stall && (!errors.As(err, &se) || !se.Stalling || se.Reason != tc.reason):
				t.Errorf("error %v, want a stall with %s", err, tc.reason)
			case !tc.stall && (!errors.As(err, &wt) || wt.Reason != tc.reason || wt.After != 0):
				t.Errorf("error %v, want a wait for a watch event with %s", err, tc.reason)
			}
			if got := condition(app, herokunixv1.ConditionBuilt); got != "False "+tc.reason {
				t.Errorf("Built %q", got)
			}
			if app.Status.Images != nil || app.Status.Promotion != nil || len(w.heroku.writes) != 0 || w.heroku.appReads != 0 {
				t.Errorf("something was promoted or Heroku called: %+v, writes %v", app.Status, w.heroku.writes)
			}
			if len(w.build.ensured) != 0 {
				t.Errorf("a promotion asked for a build")
			}
		})
	}
}
