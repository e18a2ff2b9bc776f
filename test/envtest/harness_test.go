package envtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/zapr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	. "github.com/onsi/gomega"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/test/herokustub"
	"github.com/herokunix/herokunix/test/kubelet"
)

const testHerokuApp = "acme-shop"

// harness is one test's world: a namespace, a Heroku stand-in with one
// container-stack app, and a running controller limited to the namespace.
type harness struct {
	t            *testing.T
	g            Gomega
	ctx          context.Context
	ns           string
	key          string
	stub         *herokustub.Server
	registryHost string
	herokuURL    string
	logs         *syncBuffer
	// api is the Platform API handler the controller talks to: the
	// stand-in, or a test's wrapper of it.
	api atomic.Value
}

type harnessOption func(h *harness, c *controllers.ReconcilerConfig, o *controllers.Options)

// newHarness starts a test's world. The test runs in parallel with the
// others: everything it touches is its own.
func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	return newHarnessWithStub(t, herokustub.Options{}, opts...)
}

// newHarnessWithStub is newHarness with the stand-in's options (its key is
// the harness's).
func newHarnessWithStub(t *testing.T, stubOpts herokustub.Options, opts ...harnessOption) *harness {
	t.Helper()
	return startHarness(t, stubOpts, "", opts...)
}

// newTwoTenantHarness is newHarness whose controller also watches another
// tenant's namespace, returned.
func newTwoTenantHarness(t *testing.T, opts ...harnessOption) (*harness, string) {
	t.Helper()
	other := newNamespace(t)
	return startHarness(t, herokustub.Options{}, other, opts...), other
}

func startHarness(t *testing.T, stubOpts herokustub.Options, otherNS string, opts ...harnessOption) *harness {
	t.Helper()
	t.Parallel()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	g := NewWithT(t)
	// A pass takes milliseconds, but on a loaded machine (CI next to other
	// jobs) Gomega's default second is too short a wait for one to come.
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	h := &harness{t: t, g: g, ns: newNamespace(t), key: "hkkey-" + hex.EncodeToString(b), logs: &syncBuffer{}}
	stubOpts.APIKey = h.key
	h.stub = herokustub.New(stubOpts)
	h.stub.CreateApp(testHerokuApp, "container")
	h.api.Store(h.stub.APIHandler())
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.api.Load().(http.Handler).ServeHTTP(w, r)
	}))
	reg := httptest.NewServer(h.stub.RegistryHandler())
	t.Cleanup(func() { h.stub.Close(); api.Close(); reg.Close() })
	h.registryHost = strings.TrimPrefix(reg.URL, "http://")
	h.herokuURL = api.URL

	logger := zapr.NewLogger(zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(h.logs), zapcore.DebugLevel)))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logger,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  namespaced(controllers.CacheOptions(), h.ns, otherNS),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := controllers.ReconcilerConfig{
		Builder: build.NewJobBuilder(mgr, build.JobImages{Tools: "herokunix:test", Nix: "nixos/nix:test", RegistryHost: h.registryHost}),
		NewHeroku: func(key string) (controllers.HerokuAPI, error) {
			return heroku.New(heroku.Options{APIKey: key, BaseURL: api.URL, RegistryHost: h.registryHost})
		},
		ReleasePollInterval: 100 * time.Millisecond,
		DynoPollInterval:    250 * time.Millisecond,
		DeletionGracePeriod: 2 * time.Second,
		HerokuRetryBase:     100 * time.Millisecond,
		BuildRetryBase:      time.Second,
		RegistryHost:        h.registryHost,
	}
	copts := controllers.Options{MaxConcurrentReconciles: 2}
	for _, o := range opts {
		o(h, &rcfg, &copts)
	}
	r, err := controllers.NewReconciler(mgr, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	if err := r.SetupWithManager(ctx, mgr, copts); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// createSecret stores the API key where the resources expect it.
func (h *harness) createSecret() {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: h.ns}, StringData: map[string]string{"apiKey": h.key}}
	h.g.Expect(k8sClient.Create(h.ctx, s)).To(Succeed())
}

// pinnedFlake is a flake ref with a rev, so resyncs never re-resolve it.
const pinnedFlake = "github:acme/shop/0123456789abcdef0123456789abcdef01234567"

func (h *harness) newApp(name string, mutate ...func(*herokunixv1.HerokuNixApp)) *herokunixv1.HerokuNixApp {
	h.t.Helper()
	app := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName: testHerokuApp,
			Flake:   pinnedFlake,
			Processes: map[string]herokunixv1.Process{
				"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](2), Size: "standard-1X"},
			},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
		},
	}
	for _, m := range mutate {
		m(app)
	}
	h.g.Expect(k8sClient.Create(h.ctx, app)).To(Succeed())
	return app
}

func (h *harness) get(app *herokunixv1.HerokuNixApp) *herokunixv1.HerokuNixApp {
	out := &herokunixv1.HerokuNixApp{}
	h.g.Expect(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), out)).To(Succeed())
	return out
}

// eventuallyCondition waits until app has condition typ with status and
// reason, and the status describes the current generation.
func (h *harness) eventuallyCondition(app *herokunixv1.HerokuNixApp, typ string, status metav1.ConditionStatus, reason string) *herokunixv1.HerokuNixApp {
	h.t.Helper()
	return h.eventuallyConditionWithin(app, typ, status, reason, 30*time.Second)
}

// buildTimeout bounds a real Nix build in a test.
const buildTimeout = 5 * time.Minute

func (h *harness) eventuallyConditionWithin(app *herokunixv1.HerokuNixApp, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *herokunixv1.HerokuNixApp {
	h.t.Helper()
	var got *herokunixv1.HerokuNixApp
	h.g.Eventually(func(g Gomega) {
		got = &herokunixv1.HerokuNixApp{}
		g.Expect(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), got)).To(Succeed())
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		c := meta.FindStatusCondition(got.Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil(), "condition %s missing; conditions: %+v", typ, got.Status.Conditions)
		g.Expect(c.Status).To(Equal(status), "condition %s: %s", typ, c.Message)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %s", typ, c.Message)
	}).WithTimeout(timeout).WithPolling(50 * time.Millisecond).Should(Succeed())
	return got
}

// buildJob waits for the resource's running build Job.
func (h *harness) buildJob(app *herokunixv1.HerokuNixApp) *batchv1.Job {
	h.t.Helper()
	var job *batchv1.Job
	h.g.Eventually(func(g Gomega) {
		var jobs batchv1.JobList
		g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(app.Namespace), client.MatchingLabels{build.LabelApp: app.Name})).To(Succeed())
		var running []batchv1.Job
		for _, j := range jobs.Items {
			if len(j.Status.Conditions) == 0 && j.DeletionTimestamp == nil {
				running = append(running, j)
			}
		}
		g.Expect(running).To(HaveLen(1))
		job = &running[0]
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return job
}

// pushImages pushes a fresh image per process type to the stand-in's
// registry with the same push code `manager push` uses, and returns the
// result that `manager push` would write to its termination message.
func (h *harness) pushImages(processes ...string) *artifact.Result {
	h.t.Helper()
	imgs := map[string]v1.Image{}
	for _, p := range processes {
		img, err := random.Image(256, 1)
		h.g.Expect(err).NotTo(HaveOccurred())
		img = mutate.MediaType(img, types.DockerManifestSchema2)
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
		cf, err := img.ConfigFile()
		h.g.Expect(err).NotTo(HaveOccurred())
		cf.OS, cf.Architecture = "linux", "amd64"
		img, err = mutate.ConfigFile(img, cf)
		h.g.Expect(err).NotTo(HaveOccurred())
		imgs[p] = img
	}
	out, err := image.Push(h.ctx, imgs, h.registryHost, testHerokuApp, remote.WithAuth(&authn.Basic{Username: "_", Password: h.key}))
	h.g.Expect(err).NotTo(HaveOccurred())
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	rev := hex.EncodeToString(b)
	return &artifact.Result{Revision: rev, LockedFlake: "github:acme/shop/" + rev, Images: out}
}

// completeJob ends a build Job as the kubelet would after a real push.
func (h *harness) completeJob(job *batchv1.Job, res *artifact.Result) {
	h.t.Helper()
	h.g.Expect(kubelet.CompleteJob(h.ctx, k8sClient, job, res)).To(Succeed())
}

// failJob ends a build Job with its build container failed.
func (h *harness) failJob(job *batchv1.Job, log string) {
	h.t.Helper()
	h.g.Expect(kubelet.FailJob(h.ctx, k8sClient, job, log)).To(Succeed())
}

// deployed runs a first deploy to Ready and returns the result built.
func (h *harness) deployed(name string, mutate ...func(*herokunixv1.HerokuNixApp)) (*herokunixv1.HerokuNixApp, *artifact.Result) {
	h.t.Helper()
	app := h.newApp(name, mutate...)
	res := h.pushImages(sortedProcesses(app)...)
	h.completeJob(h.buildJob(app), res)
	return h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased), res
}

func sortedProcesses(app *herokunixv1.HerokuNixApp) []string {
	return slices.Sorted(maps.Keys(app.Spec.Processes))
}

// events lists the events recorded for a resource.
func (h *harness) events(app *herokunixv1.HerokuNixApp) []eventsv1.Event {
	var list eventsv1.EventList
	h.g.Expect(k8sClient.List(h.ctx, &list, client.InNamespace(h.ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == app.Name {
			out = append(out, e)
		}
	}
	return out
}

// eventuallyEvents waits until events with every reason were recorded
// (the recorder writes them asynchronously) and returns all of them.
func (h *harness) eventuallyEvents(app *herokunixv1.HerokuNixApp, reasons ...string) []eventsv1.Event {
	h.t.Helper()
	var evs []eventsv1.Event
	h.g.Eventually(func(g Gomega) {
		evs = h.events(app)
		seen := map[string]bool{}
		for _, e := range evs {
			seen[e.Reason] = true
		}
		for _, r := range reasons {
			g.Expect(seen).To(HaveKey(r))
		}
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return evs
}

func (h *harness) writes() []herokustub.Call {
	var out []herokustub.Call
	for _, c := range h.stub.Calls() {
		if c.IsWrite() && c.Handler == "api" {
			out = append(out, c)
		}
	}
	return out
}

func (h *harness) releasesMadeSince(before int) int {
	return len(h.stub.Releases(testHerokuApp)) - before
}

// requestReconcile sets the reconcile-now annotation and waits until it
// was handled.
func (h *harness) requestReconcile(app *herokunixv1.HerokuNixApp) *herokunixv1.HerokuNixApp {
	h.t.Helper()
	v := time.Now().Format(time.RFC3339Nano)
	cur := h.get(app)
	patch := client.MergeFrom(cur.DeepCopy())
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[herokunixv1.ReconcileRequestAnnotation] = v
	h.g.Expect(k8sClient.Patch(h.ctx, cur, patch)).To(Succeed())
	var got *herokunixv1.HerokuNixApp
	h.g.Eventually(func(g Gomega) {
		got = &herokunixv1.HerokuNixApp{}
		g.Expect(k8sClient.Get(h.ctx, client.ObjectKeyFromObject(app), got)).To(Succeed())
		g.Expect(got.Status.LastHandledReconcileAt).To(Equal(v))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return got
}

// syncBuffer collects the controller's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// namespaced limits a manager's cache to one namespace, so each test's
// controller sees only its own objects.
func namespaced(o cache.Options, ns string, more ...string) cache.Options {
	o.DefaultNamespaces = map[string]cache.Config{ns: {}}
	for _, n := range more {
		if n != "" {
			o.DefaultNamespaces[n] = cache.Config{}
		}
	}
	return o
}

// loseAnswersAfterRelease makes the Platform API drop the answer to the
// first request after a formation PATCH, as a network that fails at the
// wrong moment would: the release happened, but the controller cannot see it.
func (h *harness) loseAnswersAfterRelease() {
	var patched, lost atomic.Bool
	stub := h.stub.APIHandler()
	h.api.Store(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if patched.Load() && lost.CompareAndSwap(false, true) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"id":"unavailable","message":"lost"}`, http.StatusServiceUnavailable)
			return
		}
		stub.ServeHTTP(w, r)
		if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/formation") {
			patched.Store(true)
		}
	}))
}
