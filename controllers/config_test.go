package controllers

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

func TestConfigPatchSendsOnlyWhatDiffersAndRemovesOnlyManagedVars(t *testing.T) {
	current := map[string]string{"SAME": "1", "CHANGED": "old", "GONE": "x", "UNMANAGED": "y"}
	want := map[string]string{"SAME": "1", "CHANGED": "new", "NEW": ""}
	got := configPatch(current, want, []string{"SAME", "CHANGED", "GONE", "ALREADY_GONE"})
	if !slices.Equal(slices.Sorted(maps.Keys(got)), []string{"CHANGED", "GONE", "NEW"}) {
		t.Fatalf("patch keys %v", slices.Sorted(maps.Keys(got)))
	}
	if *got["CHANGED"] != "new" || *got["NEW"] != "" || got["GONE"] != nil {
		t.Errorf("patch %v", got)
	}
	if p := configPatch(current, map[string]string{"SAME": "1"}, []string{"SAME"}); len(p) != 0 {
		t.Errorf("nothing differs, yet the patch is %v", p)
	}
}

func TestConfigDriftReadsHerokusDescriptionsOfManagedVarsOnly(t *testing.T) {
	st := &herokunixv1.ConfigStatus{Keys: []string{"A", "B"}, Release: 10}
	rels := []*heroku.Release{
		{Version: 10, Description: "Set A config vars"}, // this resource's own
		{Version: 11, Description: "Set OTHER config vars"},
		{Version: 12, Description: "Deployed web (0123456789ab)"},
		{Version: 13, Description: "Remove OTHER, B config vars"},
		{Version: 14, Description: "Attach DATABASE (@ref:postgresql-1)"},
	}
	names, by := configDrift(rels, st)
	if !slices.Equal(names, []string{"B"}) || by == nil || by.Version != 13 {
		t.Errorf("drift %v by %+v, want B by v13", names, by)
	}
	if names, _ := configDrift(rels[:3], st); names != nil {
		t.Errorf("drift %v from releases that change no managed var", names)
	}
	if names, _ := configDrift(rels, nil); names != nil {
		t.Errorf("drift %v with no managed var", names)
	}
}

func TestConfigFingerprintDependsOnValuesAndKeyButShowsNeither(t *testing.T) {
	a := configFingerprint("key-1", map[string]string{"A": "secret"})
	if a == configFingerprint("key-1", map[string]string{"A": "other"}) {
		t.Error("a changed value keeps the fingerprint")
	}
	if a == configFingerprint("key-2", map[string]string{"A": "secret"}) {
		t.Error("the fingerprint does not depend on the key")
	}
	if a != configFingerprint("key-1", map[string]string{"A": "secret"}) {
		t.Error("the fingerprint is not stable")
	}
	// Names and values are separated: moving a byte across does not collide.
	if configFingerprint("k", map[string]string{"AB": "C"}) == configFingerprint("k", map[string]string{"A": "BC"}) {
		t.Error("name/value boundary collides")
	}
}

func TestReconcileConfig(t *testing.T) {
	ctx := context.Background()
	const secretValue = "s3cr3t-database-url"
	newApp := func() *herokunixv1.HerokuNixApp {
		app := testApp()
		app.Spec.Config = []herokunixv1.ConfigVar{
			{Name: "DATABASE_URL", ValueFrom: &herokunixv1.ConfigVarSource{SecretKeyRef: &herokunixv1.KeyRef{Name: "shop-db", Key: "url"}}},
			{Name: "LOG_LEVEL", Value: ptr.To("info")},
		}
		return app
	}
	dbSecret := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-db", Namespace: "team-a"}, Data: map[string][]byte{"url": []byte(secretValue)}}
	}

	t.Run("a first apply sets the vars in one release and leaves the others", func(t *testing.T) {
		w := newFakeWorld(t, dbSecret())
		w.heroku.configVars = map[string]string{"UNMANAGED": "x", "LOG_LEVEL": "info"}
		app := newApp()
		if err := w.r.reconcileConfig(ctx, w.pass(t, app)); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(w.heroku.writes, []string{"config"}) || len(w.heroku.releases) != 1 {
			t.Errorf("writes %v, releases %d; want one config change", w.heroku.writes, len(w.heroku.releases))
		}
		if got := w.heroku.latest().Description; got != "Set DATABASE_URL config vars" {
			t.Errorf("release %q: only what differs is sent", got)
		}
		if !maps.Equal(w.heroku.configVars, map[string]string{"UNMANAGED": "x", "LOG_LEVEL": "info", "DATABASE_URL": secretValue}) {
			t.Errorf("config vars %v", w.heroku.configVars)
		}
		st := app.Status.Config
		if st == nil || !slices.Equal(st.Keys, []string{"DATABASE_URL", "LOG_LEVEL"}) || st.Release != 1 || st.Fingerprint == "" {
			t.Errorf("status %+v", st)
		}

		// The next pass: nothing changed, nothing read from Heroku.
		reads := w.heroku.configReads
		if err := w.r.reconcileConfig(ctx, w.pass(t, app)); err != nil {
			t.Fatal(err)
		}
		if w.heroku.configReads != reads || len(w.heroku.writes) != 1 {
			t.Errorf("an unchanged config read the vars (%d reads) or wrote %v", w.heroku.configReads-reads, w.heroku.writes)
		}

		// A var leaves the spec: removed, nothing else.
		app.Spec.Config = app.Spec.Config[1:]
		if err := w.r.reconcileConfig(ctx, w.pass(t, app)); err != nil {
			t.Fatal(err)
		}
		if got := w.heroku.latest().Description; got != "Remove DATABASE_URL config vars" {
			t.Errorf("release %q", got)
		}
		if !maps.Equal(w.heroku.configVars, map[string]string{"UNMANAGED": "x", "LOG_LEVEL": "info"}) {
			t.Errorf("config vars %v", w.heroku.configVars)
		}
	})

	t.Run("a missing Secret stalls before any Heroku call", func(t *testing.T) {
		w := newFakeWorld(t)
		app := newApp()
		err := w.r.reconcileConfig(ctx, w.pass(t, app))
		var se *stepError
		if !errors.As(err, &se) || !se.Stalling || se.Reason != herokunixv1.ReasonConfigSourceNotFound {
			t.Fatalf("error %v", err)
		}
		if w.heroku.configReads != 0 || len(w.heroku.writes) != 0 {
			t.Errorf("Heroku was called")
		}
	})

	t.Run("a refusal echoing a value is scrubbed", func(t *testing.T) {
		w := newFakeWorld(t, dbSecret())
		w.heroku.err["UpdateConfigVars"] = &heroku.Error{Kind: heroku.KindInvalidParams, ID: "invalid_params", Message: "value " + secretValue + " is invalid"}
		app := newApp()
		err := w.r.reconcileConfig(ctx, w.pass(t, app))
		var se *stepError
		if !errors.As(err, &se) || se.Reason != herokunixv1.ReasonConfigInvalid || !se.Stalling {
			t.Fatalf("error %v", err)
		}
		if strings.Contains(se.Error(), secretValue) || strings.Contains(se.conditionMessage(), secretValue) {
			t.Errorf("the value is in the error: %s", se.Error())
		}
		if app.Status.Config != nil {
			t.Errorf("status recorded a config that was refused: %+v", app.Status.Config)
		}
	})

	t.Run("an image release in flight is settled first", func(t *testing.T) {
		w := newFakeWorld(t, dbSecret())
		app := newApp()
		app.Status.Release = &herokunixv1.ReleaseStatus{ID: "r1", Version: 1, Name: "v1", Status: heroku.ReleasePending}
		if err := w.r.reconcileConfig(ctx, w.pass(t, app)); err != nil || w.heroku.configReads != 0 {
			t.Errorf("config applied while a release is pending: %v, %d reads", err, w.heroku.configReads)
		}
	})
}
