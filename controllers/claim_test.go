package controllers

import (
	"context"
	"testing"
)

// TestAReleaseMadeIsClaimedOnceWithoutReadsOnResync: the first release a
// resource makes records its claim (the app's id, read for the release,
// and that release); a resync reads nothing more for it, and a resource
// released to before claims existed claims its release with one read.
func TestAReleaseMadeIsClaimedOnceWithoutReadsOnResync(t *testing.T) {
	app := summaryApp(true)
	app.Status.Release = nil
	w := newFakeWorld(t, app)
	if err := w.r.reconcileRelease(context.Background(), w.pass(t, app)); err != nil {
		t.Fatal(err)
	}
	claim := app.Status.AppClaim
	if claim == nil || claim.AppID != "id-acme-shop" || claim.ReleaseID != app.Status.Release.ID || claim.Version != app.Status.Release.Version {
		t.Fatalf("claim %+v after release %+v", claim, app.Status.Release)
	}
	reads := w.heroku.appReads
	if err := w.r.reconcileRelease(context.Background(), w.pass(t, app)); err != nil {
		t.Fatal(err)
	}
	if w.heroku.appReads != reads || *app.Status.AppClaim != *claim {
		t.Errorf("a resync read the app %d more times or changed the claim to %+v", w.heroku.appReads-reads, app.Status.AppClaim)
	}

	app.Status.AppClaim = nil // as written before claims were recorded
	if err := w.r.reconcileRelease(context.Background(), w.pass(t, app)); err != nil {
		t.Fatal(err)
	}
	if got := app.Status.AppClaim; got == nil || got.AppID != "id-acme-shop" || w.heroku.appReads != reads+1 {
		t.Errorf("claim %+v after %d reads; want the release claimed with one read", got, w.heroku.appReads-reads)
	}
}
