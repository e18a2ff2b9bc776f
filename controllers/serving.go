package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

// Ready means serving: a release Heroku reports succeeded can still crash
// on boot (R10, a wrong $PORT, a library missing from a closure image).
// After each release herokunix lists the app's dynos until the release's
// web dynos are up, one of them crashed, or it has looked maxDynoLooks
// times, requeueing dynoPoll apart. That is at most maxDynoLooks calls per
// release (usually one or two) and none on a resync: the verdict is kept
// in status.serving for the release.
const (
	defaultDynoPoll = 5 * time.Second
	// maxDynoLooks spans two minutes at the default poll: twice Heroku's
	// 60-second boot timeout (R10), after which a dyno that has not bound
	// $PORT is crashed.
	maxDynoLooks = 24
)

// reconcileServing looks at the web dynos of the release this resource
// made (status.release) until they are up. It sets Serving and records
// the verdict in status.serving; it spends no call once the release has
// one. A crashed web dyno stalls (DynosCrashed) until the next release;
// dynos still starting requeue (WaitingForDynos) until maxDynoLooks, then
// stall (DynosNotUp). With no web process, or web at quantity 0, nothing
// serves HTTP and nothing is looked at (NoWebDynos).
func (r *HerokuNixAppReconciler) reconcileServing(ctx context.Context, p *pass) error {
	app := p.app
	rel := app.Status.Release
	if rel == nil {
		return nil
	}
	want, ok := wantedWebDynos(app)
	if !ok {
		app.Status.Serving = nil
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionTrue, herokunixv1.ReasonNoWebDynos,
			"no web dynos to look at: spec.processes has no web type, or its quantity is 0")
		return nil
	}
	s := app.Status.Serving
	if s == nil || s.Release != rel.Version {
		s = &herokunixv1.ServingStatus{Release: rel.Version, State: herokunixv1.DynoStateStarting}
		app.Status.Serving = s
	}
	if s.State != herokunixv1.DynoStateStarting {
		return servingVerdict(app, s)
	}
	dynos, err := p.heroku.Dynos(ctx, app.Spec.AppName)
	if err != nil {
		se := herokuError("listing the dynos of "+app.Spec.AppName, err)
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionFalse, se.Reason, se.conditionMessage())
		return se
	}
	s.Looks++
	s.State, s.Dynos = judgeWebDynos(dynos, rel.Version, want)
	if s.State == herokunixv1.DynoStateStarting && s.Looks >= maxDynoLooks {
		s.State = herokunixv1.ServingGaveUp
	}
	if s.State == herokunixv1.DynoStateStarting {
		msg := fmt.Sprintf("release %s succeeded; waiting for its web dynos to come up (%s)", rel.Name, s.Dynos)
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionFalse, herokunixv1.ReasonWaitingForDynos, msg)
		return &waiting{Reason: herokunixv1.ReasonWaitingForDynos, Message: msg, After: r.dynoPoll()}
	}
	return servingVerdict(app, s)
}

// servingVerdict sets Serving from a finished look and ends the pass as
// it says: nil when up, a stall otherwise.
func servingVerdict(app *herokunixv1.HerokuNixApp, s *herokunixv1.ServingStatus) error {
	name := releaseName(s.Release)
	switch s.State {
	case herokunixv1.DynoStateUp:
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionTrue, herokunixv1.ReasonDynosUp,
			fmt.Sprintf("the web dynos of %s are up (%s)", name, s.Dynos))
		return nil
	case herokunixv1.DynoStateCrashed:
		msg := fmt.Sprintf("release %s runs but does not serve: its web dynos crashed (%s); see `heroku logs --app %s --dyno web`",
			name, s.Dynos, app.Spec.AppName)
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionFalse, herokunixv1.ReasonDynosCrashed, msg)
		return stalled(herokunixv1.ReasonDynosCrashed, "%s", msg)
	default:
		msg := fmt.Sprintf("the web dynos of %s were not up after %d looks (%s); see `heroku ps --app %s`",
			name, s.Looks, s.Dynos, app.Spec.AppName)
		setCondition(app, herokunixv1.ConditionServing, metav1.ConditionFalse, herokunixv1.ReasonDynosNotUp, msg)
		return stalled(herokunixv1.ReasonDynosNotUp, "%s", msg)
	}
}

// wantedWebDynos is how many web dynos must be up for the release to
// serve: spec's quantity, or at least one when Heroku's is left alone.
// ok is false when none serve (no web type, or quantity 0).
func wantedWebDynos(app *herokunixv1.HerokuNixApp) (int, bool) {
	web, ok := app.Spec.Processes["web"]
	if !ok {
		return 0, false
	}
	if web.Quantity == nil {
		return 1, true
	}
	return int(*web.Quantity), *web.Quantity > 0
}

// judgeWebDynos says what the web dynos of release version are doing:
// crashed when one of them crashed; up when at least want of them are up
// (an eco dyno asleep, idle, booted before it slept); starting otherwise,
// dynos of older releases being replaced included. It also returns them
// as "web.1 up, web.2 starting" (or why there are none).
func judgeWebDynos(dynos []heroku.Dyno, version, want int) (state, summary string) {
	var mine []heroku.Dyno
	for _, d := range dynos {
		if d.Type == "web" && d.ReleaseVersion == version {
			mine = append(mine, d)
		}
	}
	if len(mine) == 0 {
		return herokunixv1.DynoStateStarting, "no web dyno of " + releaseName(version) + " yet"
	}
	slices.SortFunc(mine, func(a, b heroku.Dyno) int { return strings.Compare(a.Name, b.Name) })
	up, crashed := 0, false
	parts := make([]string, 0, len(mine))
	for _, d := range mine {
		parts = append(parts, d.Name+" "+d.State)
		switch d.State {
		case heroku.DynoUp, heroku.DynoIdle:
			up++
		case heroku.DynoCrashed:
			crashed = true
		}
	}
	summary = truncate(strings.Join(parts, ", "), 256)
	switch {
	case crashed:
		return herokunixv1.DynoStateCrashed, summary
	case up >= want:
		return herokunixv1.DynoStateUp, summary
	}
	return herokunixv1.DynoStateStarting, summary
}

func (r *HerokuNixAppReconciler) dynoPoll() time.Duration {
	if r.DynoPollInterval > 0 {
		return r.DynoPollInterval
	}
	return defaultDynoPoll
}
