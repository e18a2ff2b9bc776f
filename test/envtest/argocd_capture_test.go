package envtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/test/herokustub"
)

var updateArgoTestdata = flag.Bool("update-argocd-testdata", false,
	"rewrite the Argo CD health check's testdata/ from the objects real reconciles produce")

// Fixed values the captured objects carry in place of what differs from
// one run to the next.
const (
	capturedNamespace = "team-a"
	capturedCreated   = "2026-01-02T02:58:11Z"
	capturedStarted   = "2026-01-02T02:58:12Z"
	capturedCompleted = "2026-01-02T03:03:58Z"
	capturedCondition = "2026-01-02T03:04:05Z"
	capturedRequest   = "2026-01-02T03:10:00Z"
	capturedDrift     = "2026-01-02T03:10:01Z"
	capturedReleaseID = "01234567-89ab-cdef-0123-456789abcdef"
	capturedWebURL    = "https://acme-shop-0123456789ab.herokuapp.com/"
	// capturedRevision is the revision the builds report; it is an input
	// (what `manager push` writes), so it needs no normalising.
	capturedRevision = "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
)

// capturedDynoLooks stands for the number of dyno lists status.serving counts.
const capturedDynoLooks = 1

// capturedJobHash stands for the hash part of a build Job's name.
const capturedJobHash = "-0a1b2c3d4e"

// normalizeCaptured makes a live HerokuNixApp read from namespace ns the
// same in every run: what the API server makes up (uid, resourceVersion,
// creationTimestamp, managedFields) goes, times and the Heroku stand-in's
// random IDs become fixed values, and the test's namespace becomes
// capturedNamespace wherever it occurs. Everything else (spec defaults,
// finalizers, generations, conditions and their messages, build names,
// image digests, release versions) is what the reconciles produced.
func normalizeCaptured(obj map[string]any, ns string) map[string]any {
	out := replaceStrings(runtime.DeepCopyJSON(obj), ns, capturedNamespace).(map[string]any)
	md, _ := out["metadata"].(map[string]any)
	for _, k := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields"} {
		delete(md, k)
	}
	if ann, ok := md["annotations"].(map[string]any); ok {
		if _, ok := ann[herokunixv1.ReconcileRequestAnnotation]; ok {
			ann[herokunixv1.ReconcileRequestAnnotation] = capturedRequest
		}
	}
	st, _ := out["status"].(map[string]any)
	if st == nil {
		return out
	}
	if b, ok := st["build"].(map[string]any); ok {
		// A build's name hashes the resource's UID, new in every run.
		if job, _ := b["job"].(string); job != "" {
			if i := strings.LastIndexByte(job, '-'); i > 0 {
				out = replaceStrings(out, job, job[:i]+capturedJobHash).(map[string]any)
				st = out["status"].(map[string]any)
			}
		}
	}
	conds, _ := st["conditions"].([]any)
	for _, c := range conds {
		c.(map[string]any)["lastTransitionTime"] = capturedCondition
	}
	setIfPresent(st, "lastHandledReconcileAt", capturedRequest)
	setIfPresent(st, "webURL", capturedWebURL)
	if b, ok := st["build"].(map[string]any); ok {
		setIfPresent(b, "startTime", capturedStarted)
		setIfPresent(b, "completionTime", capturedCompleted)
		// Inputs hash the Secrets' resourceVersions.
		setIfPresent(b, "inputs", capturedInputs)
	}
	if r, ok := st["release"].(map[string]any); ok {
		setIfPresent(r, "id", capturedReleaseID)
	}
	if c, ok := st["appClaim"].(map[string]any); ok {
		setIfPresent(c, "appID", capturedAppID)
		setIfPresent(c, "releaseID", capturedReleaseID)
	}
	if sv, ok := st["serving"].(map[string]any); ok {
		// How many looks a capture catches depends on timing.
		setIfPresent(sv, "looks", int64(capturedDynoLooks))
	}
	if d, ok := st["lastDriftCheck"].(map[string]any); ok {
		setIfPresent(d, "time", capturedDrift)
	}
	return out
}

// What the stand-in and the API server make up anew in every run.
const (
	capturedInputs = "0123456789abcdef"
	capturedAppID  = "01234567-89ab-4cde-8f01-23456789abcd"
)

func setIfPresent(m map[string]any, key string, v any) {
	if _, ok := m[key]; ok {
		m[key] = v
	}
}

// replaceStrings replaces old by new in every string of a JSON value.
func replaceStrings(v any, old, new string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = replaceStrings(e, old, new)
		}
	case []any:
		for i, e := range v {
			v[i] = replaceStrings(e, old, new)
		}
	case string:
		return strings.ReplaceAll(v, old, new)
	}
	return v
}

// fixedImage is an image that is the same in every run (random.Image is
// not), so the digests in status are too. Its one layer is a gzipped tar
// written without compression, whose bytes no deflate tuning changes.
func fixedImage(t *testing.T, process string) v1.Image {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	content := []byte("#!/bin/sh\necho " + process + "\n")
	hdr := &tar.Header{Name: "bin/" + process, Mode: 0o755, Size: int64(len(content)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	layerBytes := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/bin/" + process}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushFixedImages pushes fixedImage for each process as `manager push`
// does and returns what it would report, at capturedRevision.
func (h *harness) pushFixedImages(processes ...string) *artifact.Result {
	h.t.Helper()
	imgs := map[string]v1.Image{}
	for _, p := range processes {
		imgs[p] = fixedImage(h.t, p)
	}
	out, err := image.Push(h.ctx, imgs, h.registryHost, testHerokuApp, remote.WithAuth(&authn.Basic{Username: "_", Password: h.key}))
	h.g.Expect(err).NotTo(HaveOccurred())
	return &artifact.Result{Revision: capturedRevision, LockedFlake: "github:acme/shop/" + capturedRevision, Images: out}
}

// capturedApp is the resource the captured objects are: as Argo CD would
// apply it (with its tracking label), following a moving ref.
func capturedApp(a *herokunixv1.HerokuNixApp) {
	a.Labels = map[string]string{"app.kubernetes.io/instance": "shop"}
	a.Spec.Flake = "github:acme/shop?ref=main"
	a.Spec.Processes = map[string]herokunixv1.Process{
		"web": {Attribute: "packages.x86_64-linux.web", Command: []string{"bin/server"}, Quantity: ptr.To[int32](2), Size: "standard-1X"},
	}
}

// deployedForCapture deploys capturedApp with fixed images.
func (h *harness) deployedForCapture() *herokunixv1.HerokuNixApp {
	h.t.Helper()
	app := h.newApp("shop", capturedApp)
	h.completeJob(h.buildJob(app), h.pushFixedImages("web"))
	return h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

// updated changes the live resource and returns the object the API server
// answered with: the new generation with the status as it was, before the
// controller can have seen it.
func (h *harness) updated(app *herokunixv1.HerokuNixApp, change func(map[string]any)) map[string]any {
	h.t.Helper()
	u := h.live(app)
	change(u.Object)
	h.g.Expect(k8sClient.Update(h.ctx, u)).To(Succeed())
	return u.Object
}

// capture is one testdata object: read returns it normalised. A live
// capture reads the resource again on each call, so a check can wait out a
// write the controller has not finished; captureAt keeps an object taken
// at one moment of the scenario, before it moved on.
type capture struct {
	file string
	read func() map[string]any
}

func (h *harness) liveCapture(file string, app *herokunixv1.HerokuNixApp) capture {
	return capture{file: file, read: func() map[string]any { return normalizeCaptured(h.live(app).Object, h.ns) }}
}

func (h *harness) captureAt(file string, obj map[string]any) capture {
	obj = normalizeCaptured(obj, h.ns)
	return capture{file: file, read: func() map[string]any { return obj }}
}

// argoScenarios drive real reconciles to each state health_test.yaml
// covers; each returns the objects to capture.
var argoScenarios = []struct {
	name  string
	files []string
	run   func(h *harness) []capture
}{
	{"new and building", []string{"new.yaml", "building.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := &herokunixv1.HerokuNixApp{}
		app.Name, app.Namespace = "shop", h.ns
		capturedApp(app)
		app.Spec.AppName, app.Spec.CredentialsSecretRef = testHerokuApp, herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(app)
		h.g.Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{Object: obj}
		u.SetAPIVersion(herokunixv1.GroupVersion.String())
		u.SetKind("HerokuNixApp")
		h.g.Expect(k8sClient.Create(h.ctx, u)).To(Succeed())
		// The answer to the create is the resource before the controller saw it.
		created := h.captureAt("new.yaml", u.Object)
		h.eventuallyCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, herokunixv1.ReasonBuildRunning)
		return []capture{created, h.liveCapture("building.yaml", app)}
	}},
	{"deployed, then changed", []string{"healthy.yaml", "generation_not_observed.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := h.deployedForCapture()
		healthy := h.captureAt("healthy.yaml", h.live(app).Object)
		changed := h.updated(app, func(o map[string]any) {
			web := o["spec"].(map[string]any)["processes"].(map[string]any)["web"].(map[string]any)
			web["quantity"] = int64(3)
		})
		return []capture{healthy, h.captureAt("generation_not_observed.yaml", changed)}
	}},
	{"suspended after a deploy", []string{"suspended.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := h.deployedForCapture()
		h.updated(app, func(o map[string]any) { o["spec"].(map[string]any)["suspend"] = true })
		h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
		return []capture{h.liveCapture("suspended.yaml", app)}
	}},
	{"the build failed", []string{"degraded_build_failed.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := h.newApp("shop", capturedApp)
		h.failJob(h.buildJob(app), "error: attribute 'web' missing")
		h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonBuildFailed)
		return []capture{h.liveCapture("degraded_build_failed.yaml", app)}
	}},
	{"the API-key Secret is missing", []string{"degraded_credentials.yaml"}, func(h *harness) []capture {
		app := h.newApp("shop", capturedApp)
		h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonCredentialsNotFound)
		return []capture{h.liveCapture("degraded_credentials.yaml", app)}
	}},
	{"the release phase runs, then fails", []string{"release_pending.yaml", "degraded_release_phase_failed.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := h.deployedForCapture()
		h.updated(app, func(o map[string]any) {
			o["spec"].(map[string]any)["processes"].(map[string]any)["release"] = map[string]any{
				"attribute": "packages.x86_64-linux.migrate", "command": []any{"bin/migrate"}}
		})
		h.completeJob(h.buildJob(app), h.pushFixedImages("web", "release"))
		h.eventuallyCondition(app, herokunixv1.ConditionReleased, metav1.ConditionFalse, herokunixv1.ReasonReleasePending)
		pending := h.captureAt("release_pending.yaml", h.live(app).Object)
		h.g.Expect(h.stub.CompletePendingRelease(testHerokuApp, false)).To(Succeed())
		h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonReleasePhaseFailed)
		return []capture{pending, h.liveCapture("degraded_release_phase_failed.yaml", app)}
	}},
	{"the web dynos start, then crash", []string{"waiting_for_dynos.yaml", "degraded_dynos_crashed.yaml"}, func(h *harness) []capture {
		h.createSecret()
		app := h.newApp("shop", capturedApp)
		h.completeJob(h.buildJob(app), h.pushFixedImages("web"))
		h.eventuallyCondition(app, herokunixv1.ConditionReconciling, metav1.ConditionTrue, herokunixv1.ReasonWaitingForDynos)
		waiting := h.captureAt("waiting_for_dynos.yaml", h.live(app).Object)
		h.g.Expect(h.stub.SetDynoState(testHerokuApp, "web", herokustub.DynoCrashed)).To(Succeed())
		h.eventuallyCondition(app, herokunixv1.ConditionStalled, metav1.ConditionTrue, herokunixv1.ReasonDynosCrashed)
		return []capture{waiting, h.liveCapture("degraded_dynos_crashed.yaml", app)}
	}},
}

// argoScenarioStubs configures the Heroku stand-in of the scenarios that
// need more than the default (dynos up at once).
var argoScenarioStubs = map[string]herokustub.Options{
	"the web dynos start, then crash": {DynoState: herokustub.DynoStarting},
}

// The health check's testdata/ holds objects captured from real
// reconciles, normalised by normalizeCaptured: each file must be what the
// reconcile it names produces, so it cannot drift from the controller.
// Rewrite them with
//
//	go test ./test/envtest/ -run TestArgoCDTestdataIsCapturedFromRealReconciles -update-argocd-testdata
func TestArgoCDTestdataIsCapturedFromRealReconciles(t *testing.T) {
	dir := filepath.Join(argoCustomizations, "testdata")
	// Every file in testdata/ is one a scenario captures.
	var captured []string
	for _, sc := range argoScenarios {
		captured = append(captured, sc.files...)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(captured, e.Name()) {
			t.Errorf("%s/%s is captured by no scenario", dir, e.Name())
		}
	}
	for _, sc := range argoScenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := newHarnessWithStub(t, argoScenarioStubs[sc.name])
			caps := sc.run(h)
			var files []string
			for _, c := range caps {
				files = append(files, c.file)
			}
			h.g.Expect(files).To(Equal(sc.files))
			for _, c := range caps {
				path := filepath.Join(dir, c.file)
				if *updateArgoTestdata {
					b, err := yaml.Marshal(c.read())
					h.g.Expect(err).NotTo(HaveOccurred())
					h.g.Expect(os.WriteFile(path, b, 0o644)).To(Succeed())
					continue
				}
				want := readCaptured(t, path)
				var got map[string]any
				h.g.Eventually(func() bool {
					got = c.read()
					return reflect.DeepEqual(got, want)
				}).WithTimeout(10*time.Second).WithPolling(100*time.Millisecond).Should(BeTrue(), func() string {
					return c.file + " is not what the reconcile produces (rerun with -update-argocd-testdata):\n" + yamlDiff(t, want, got)
				})
			}
		})
	}
}

// readCaptured reads a testdata object as JSON values, as normalizeCaptured
// returns them.
func readCaptured(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update-argocd-testdata)", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u.Object
}

// yamlDiff shows the lines of want and got that differ.
func yamlDiff(t *testing.T, want, got map[string]any) string {
	t.Helper()
	w, _ := yaml.Marshal(want)
	g, _ := yaml.Marshal(got)
	wl, gl := strings.Split(string(w), "\n"), strings.Split(string(g), "\n")
	var b strings.Builder
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var a, c string
		if i < len(wl) {
			a = wl[i]
		}
		if i < len(gl) {
			c = gl[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
		}
	}
	return b.String()
}
