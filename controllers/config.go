package controllers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

// Config vars.
//
// herokunix owns the config vars it set (status.config.keys) and only
// those. A change of spec.config, or of a Secret or ConfigMap it reads, is
// applied with one GET of the app's config vars (to send only what
// differs, so a repeated pass after a lost answer makes no second
// release) and one PATCH (null removes), which makes one release; the
// latest release is then read to follow its release phase. Values never
// leave the pass that read them: status keeps the names and an HMAC of
// names and values keyed with the API key, events name vars, never
// values, and a Heroku error text is scrubbed of them.
//
// A managed var changed by someone else is found in the release list the
// resync reads anyway (checkDrift): Heroku describes such a release as
// "Set FOO config vars" or "Remove FOO config vars".

// maxConfigBytes is Heroku's limit for an app's config: all names and
// values together (Dev Center "Configuration and Config Vars": "cannot
// exceed 32kb for each app").
const maxConfigBytes = 32 << 10

// reconcileConfig applies spec.config to the app's config vars when the
// names or values differ from those applied last (status.config). It
// waits while an image release is in flight (an intent, or a pending
// release this resource follows): the release step settles that first.
// A missing Secret, ConfigMap or key stalls with ConfigSourceNotFound
// before anything is sent. A release it makes while the formation holds a
// release image waits for its release phase like an image release.
func (r *HerokuNixAppReconciler) reconcileConfig(ctx context.Context, p *pass) error {
	app := p.app
	st := app.Status.Config
	if len(app.Spec.Config) == 0 && (st == nil || len(st.Keys) == 0) {
		return nil
	}
	if app.Status.ReleaseIntent != nil || (app.Status.Release != nil && app.Status.Release.Status == heroku.ReleasePending) {
		return nil
	}
	inputs := r.configInputs(ctx, app, p.apiKey)
	if st != nil && st.Fingerprint != "" && r.configMemo.fingerprint(app.UID, inputs) == st.Fingerprint &&
		slices.Equal(st.Keys, configNames(app.Spec.Config)) {
		return nil // nothing read has changed since it was applied
	}
	want, err := r.configValues(ctx, app)
	if err != nil {
		return err
	}
	fp := configFingerprint(p.apiKey, want)
	r.configMemo.remember(app.UID, inputs, fp)
	if st != nil && st.Fingerprint == fp && slices.Equal(st.Keys, slices.Sorted(maps.Keys(want))) {
		return nil
	}
	return r.applyConfig(ctx, p, want, fp)
}

// applyConfig sends what differs between want and the app's config vars:
// values to set, and nil for managed vars no longer wanted. It records the
// keys, the fingerprint and the release made, and adopts that release as
// the one this resource follows when it directly follows it (it runs the
// same images).
func (r *HerokuNixAppReconciler) applyConfig(ctx context.Context, p *pass, want map[string]string, fp string) error {
	app := p.app
	name := app.Spec.AppName
	var managed []string
	lastRelease := 0
	if st := app.Status.Config; st != nil {
		managed, lastRelease = st.Keys, st.Release
	}
	current, err := p.heroku.ConfigVars(ctx, name)
	if err != nil {
		return configError(herokuError("reading the config vars of "+name, err), want)
	}
	patch := configPatch(current, want, managed)
	keys := slices.Sorted(maps.Keys(want))
	if len(patch) == 0 {
		// Heroku has these values already (an answer lost after the
		// PATCH, or someone set the same): nothing to release.
		app.Status.Config = configStatus(keys, fp, lastRelease)
		return nil
	}
	if err := p.heroku.UpdateConfigVars(ctx, name, patch); err != nil {
		se := herokuError("updating the config vars of "+name, err)
		if errors.Is(err, heroku.ErrInvalidParams) {
			se.Reason = herokunixv1.ReasonConfigInvalid
		}
		return configError(se, want)
	}
	set, removed := patchNames(patch)
	// The vars are set: recorded now, so a failed read below does not set
	// them again.
	app.Status.Config = configStatus(keys, fp, lastRelease)
	rel, err := p.heroku.CurrentRelease(ctx, name)
	if err != nil {
		return r.releaseError(app, herokuError("reading the release made by the config var change", err))
	}
	if rel == nil {
		return nil
	}
	app.Status.Config = configStatus(keys, fp, rel.Version)
	r.event(app, corev1.EventTypeNormal, "ConfigVarsChanged", "Config", "%s on %s (%s)",
		describeConfigChange(set, removed), name, releaseName(rel.Version))
	ours := app.Status.Release
	if ours != nil && rel.Version == ours.Version+1 && (ours.Status == heroku.ReleaseSucceeded || ours.Version == lastRelease) {
		// Nothing came between: the config release runs this resource's
		// images, and is followed as its release from now on.
		app.Status.Release = releaseStatusOf(rel, ours.Images)
		return r.releaseStatus(ctx, p, true, rel.OutputStreamURL)
	}
	if rel.Status == heroku.ReleasePending {
		return r.waitForPending(p, rel)
	}
	return nil
}

func configStatus(keys []string, fp string, release int) *herokunixv1.ConfigStatus {
	if len(keys) == 0 {
		// No var is managed: nothing to remember, not even the release.
		return nil
	}
	return &herokunixv1.ConfigStatus{Keys: keys, Fingerprint: fp, Release: release}
}

// configPatch is the PATCH body that makes the app's config vars (current)
// hold want and lack every var of managed that want does not name: only
// what differs, nil for a var to remove. Vars neither wanted nor managed
// are left out, whatever they hold.
func configPatch(current, want map[string]string, managed []string) map[string]*string {
	patch := map[string]*string{}
	for k, v := range want {
		if cur, ok := current[k]; !ok || cur != v {
			patch[k] = &v
		}
	}
	for _, k := range managed {
		if _, wanted := want[k]; wanted {
			continue
		}
		if _, ok := current[k]; ok {
			patch[k] = nil
		}
	}
	return patch
}

func patchNames(patch map[string]*string) (set, removed []string) {
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		if patch[k] == nil {
			removed = append(removed, k)
		} else {
			set = append(set, k)
		}
	}
	return set, removed
}

// describeConfigChange names the vars changed, never their values.
func describeConfigChange(set, removed []string) string {
	var parts []string
	if len(set) > 0 {
		parts = append(parts, "set config vars "+strings.Join(set, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed config vars "+strings.Join(removed, ", "))
	}
	return strings.Join(parts, "; ")
}

// configNames are the names spec.config sets, sorted.
func configNames(vars []herokunixv1.ConfigVar) []string {
	out := make([]string, 0, len(vars))
	for _, v := range vars {
		out = append(out, v.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// configFingerprint is an HMAC-SHA256 of the names and values keyed with
// the API key: equal configs give equal fingerprints, and a short value
// cannot be guessed from status without the key. A rotated key changes it,
// which costs one read of the config vars and no release.
func configFingerprint(apiKey string, vars map[string]string) string {
	mac := hmac.New(sha256.New, []byte(apiKey))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		mac.Write([]byte(k))
		mac.Write([]byte{0})
		mac.Write([]byte(vars[k]))
		mac.Write([]byte{0})
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// configValues resolves spec.config: literal values, and keys of Secrets
// (read from the API server; the cache holds no Secret data) and
// ConfigMaps (likewise: only their metadata is watched) of the namespace.
func (r *HerokuNixAppReconciler) configValues(ctx context.Context, app *herokunixv1.HerokuNixApp) (map[string]string, error) {
	out := make(map[string]string, len(app.Spec.Config))
	secrets := map[string]map[string][]byte{}
	configMaps := map[string]*corev1.ConfigMap{}
	size := 0
	for _, v := range app.Spec.Config {
		var val string
		switch {
		case v.Value != nil:
			val = *v.Value
		case v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil:
			ref := v.ValueFrom.SecretKeyRef
			data, ok := secrets[ref.Name]
			if !ok {
				var s corev1.Secret
				if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}, &s); err != nil {
					return nil, configSourceError(err, "Secret", app.Namespace, ref.Name, v.Name)
				}
				data = s.Data
				secrets[ref.Name] = data
			}
			b, ok := data[ref.Key]
			if !ok {
				return nil, stalled(herokunixv1.ReasonConfigSourceNotFound, "Secret %s/%s has no key %q (config var %s)", app.Namespace, ref.Name, ref.Key, v.Name)
			}
			val = string(b)
		case v.ValueFrom != nil && v.ValueFrom.ConfigMapKeyRef != nil:
			ref := v.ValueFrom.ConfigMapKeyRef
			cm, ok := configMaps[ref.Name]
			if !ok {
				cm = &corev1.ConfigMap{}
				if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}, cm); err != nil {
					return nil, configSourceError(err, "ConfigMap", app.Namespace, ref.Name, v.Name)
				}
				configMaps[ref.Name] = cm
			}
			if s, ok := cm.Data[ref.Key]; ok {
				val = s
			} else if b, ok := cm.BinaryData[ref.Key]; ok {
				val = string(b)
			} else {
				return nil, stalled(herokunixv1.ReasonConfigSourceNotFound, "ConfigMap %s/%s has no key %q (config var %s)", app.Namespace, ref.Name, ref.Key, v.Name)
			}
		default:
			// The schema requires value or valueFrom; an object made
			// without it (no API server validation) is refused here.
			return nil, stalled(herokunixv1.ReasonConfigInvalid, "config var %s has neither value nor valueFrom", v.Name)
		}
		out[v.Name] = val
		size += len(v.Name) + len(val)
	}
	if size > maxConfigBytes {
		return nil, stalled(herokunixv1.ReasonConfigInvalid, "the config vars in spec.config hold %d bytes; Heroku allows %d for all of an app's config vars", size, maxConfigBytes)
	}
	return out, nil
}

func configSourceError(err error, kind, namespace, name, varName string) error {
	if apierrors.IsNotFound(err) {
		return stalled(herokunixv1.ReasonConfigSourceNotFound, "%s %s/%s not found (config var %s)", kind, namespace, name, varName)
	}
	if se := readForbidden(err, kind, namespace, name, "config var "+varName); se != nil {
		return se
	}
	return fmt.Errorf("reading %s %s/%s for config var %s: %w", kind, namespace, name, varName, err)
}

// configError scrubs every wanted value from a Heroku error's text (an
// error body might echo one) before it reaches conditions and logs.
func configError(se *stepError, want map[string]string) *stepError {
	msg := se.Err.Error()
	scrubbed := msg
	for _, v := range want {
		if len(v) >= 3 {
			scrubbed = strings.ReplaceAll(scrubbed, v, "<redacted>")
		}
	}
	if scrubbed != msg {
		se.Err = errors.New(scrubbed)
	}
	return se
}

// configInputs identifies what spec.config's values are read from: the
// entries, the versions of the Secrets and ConfigMaps they name (from the
// cache of their metadata) and the key. "" when a version is unknown.
func (r *HerokuNixAppReconciler) configInputs(ctx context.Context, app *herokunixv1.HerokuNixApp, apiKey string) string {
	h := sha256.New()
	spec, _ := json.Marshal(app.Spec.Config)
	h.Write(spec)
	key := sha256.Sum256([]byte(apiKey))
	h.Write(key[:])
	for _, ref := range configRefs(app) {
		var meta metav1.PartialObjectMetadata
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(ref.Kind))
		if err := r.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}, &meta); err != nil || meta.ResourceVersion == "" {
			return ""
		}
		fmt.Fprintf(h, "\x00%s/%s@%s", ref.Kind, ref.Name, meta.ResourceVersion)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// objectRef is a Secret or ConfigMap spec.config reads.
type objectRef struct{ Kind, Name string }

// configRefs are the Secrets and ConfigMaps spec.config reads, each once,
// in order.
func configRefs(app *herokunixv1.HerokuNixApp) []objectRef {
	var out []objectRef
	for _, v := range app.Spec.Config {
		if v.ValueFrom == nil {
			continue
		}
		if ref := v.ValueFrom.SecretKeyRef; ref != nil {
			out = append(out, objectRef{"Secret", ref.Name})
		}
		if ref := v.ValueFrom.ConfigMapKeyRef; ref != nil {
			out = append(out, objectRef{"ConfigMap", ref.Name})
		}
	}
	slices.SortFunc(out, func(a, b objectRef) int { return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name) })
	return slices.Compact(out)
}

// configMemo remembers, per resource, the fingerprint of the values read
// from given inputs, so an unchanged config costs no Secret read. It holds
// no value.
type configMemo struct {
	mu   sync.Mutex
	memo map[types.UID][2]string
}

func (m *configMemo) fingerprint(uid types.UID, inputs string) string {
	if inputs == "" {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.memo[uid]; ok && e[0] == inputs {
		return e[1]
	}
	return ""
}

func (m *configMemo) remember(uid types.UID, inputs, fp string) {
	if inputs == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.memo == nil {
		m.memo = map[types.UID][2]string{}
	}
	m.memo[uid] = [2]string{inputs, fp}
}

func (m *configMemo) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.memo, uid)
}

// configDrift names the managed vars that releases after the last one
// this resource made by changing config vars changed, by Heroku's
// descriptions: "Set FOO, BAR config vars" and "Remove FOO config vars"
// (heroku.md "Release phase": a config var change made by a user is a
// release). [U] The ", " join of several names is what Heroku shows in
// `heroku releases`, but no source documents it. Descriptions only detect
// drift here; whether to release images never depends on them.
func configDrift(newer []*heroku.Release, st *herokunixv1.ConfigStatus) (names []string, by *heroku.Release) {
	if st == nil || len(st.Keys) == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, rel := range newer {
		if rel.Version <= st.Release {
			continue
		}
		for _, n := range configVarsIn(rel.Description) {
			if slices.Contains(st.Keys, n) && !seen[n] {
				seen[n] = true
				names = append(names, n)
				by = rel
			}
		}
	}
	slices.Sort(names)
	return names, by
}

// configVarsIn reads the var names of a config var release's description.
func configVarsIn(description string) []string {
	for _, verb := range []string{"Set ", "Remove "} {
		rest, ok := strings.CutPrefix(description, verb)
		if !ok {
			continue
		}
		list, ok := strings.CutSuffix(rest, " config vars")
		if !ok {
			list, ok = strings.CutSuffix(rest, " config var")
		}
		if !ok {
			return nil
		}
		return strings.Split(list, ", ")
	}
	return nil
}

// configDrifted reacts to managed vars changed on Heroku. Correct:
// forget the fingerprint, so the config step reads the vars and sets them
// again (on this pass's return or the next one), with an event. Observe:
// stall with DriftDetected; a change of spec.config applies it again.
func (r *HerokuNixAppReconciler) configDrifted(app *herokunixv1.HerokuNixApp, names []string, by *heroku.Release) error {
	if len(names) == 0 {
		return nil
	}
	what := fmt.Sprintf("config var %s, which this resource manages, was changed on Heroku by %s (%q)",
		strings.Join(names, ", "), releaseName(by.Version), by.Description)
	if app.Spec.DriftPolicy == herokunixv1.DriftPolicyObserve {
		return stalled(herokunixv1.ReasonDriftDetected, "%s", what)
	}
	app.Status.Config.Fingerprint = ""
	app.Status.Config.Release = by.Version
	r.event(app, corev1.EventTypeWarning, herokunixv1.ReasonDriftDetected, "Correct", "%s; setting it again", what)
	return &waiting{Reason: herokunixv1.ReasonProgressing, Message: what + "; setting it again", After: configDriftRequeue}
}

// configDriftRequeue is how soon a pass comes back to set drifted config
// vars again.
const configDriftRequeue = time.Second
