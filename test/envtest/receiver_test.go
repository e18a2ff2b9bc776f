package envtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/receiver"
)

// webhook is a receiver serving over real HTTP against the test's API
// server, with its keys in a real Secret.
type webhook struct {
	url    string
	secret []byte
}

func (h *harness) startReceiver(limits receiver.Limits) *webhook {
	h.t.Helper()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "herokunix-webhooks", Namespace: h.ns},
		Data: map[string][]byte{receiver.SecretKeyGitHub: key}}
	h.g.Expect(k8sClient.Create(h.ctx, sec)).To(Succeed())
	handler := receiver.New(receiver.Options{
		Client:  k8sClient,
		Secrets: &receiver.SecretSource{Reader: k8sClient, Name: client.ObjectKeyFromObject(sec)},
		Limits:  limits,
		Log:     logr.Discard(),
	})
	srv := httptest.NewServer(handler)
	h.t.Cleanup(srv.Close)
	return &webhook{url: srv.URL, secret: key}
}

// githubPush sends a push event as GitHub does and returns the answer.
func (w *webhook) githubPush(t *testing.T, repo, branch, delivery string, secret []byte) (int, receiver.Response) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/" + branch, "after": "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd",
		"repository": map[string]any{"full_name": repo, "html_url": "https://github.com/" + repo, "default_branch": "main"},
	})
	req, _ := http.NewRequest(http.MethodPost, w.url+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", receiver.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out receiver.Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// deployedTo deploys a resource to its own Heroku app.
func (h *harness) deployedTo(name, herokuApp, flake string) *herokunixv1.HerokuNixApp {
	h.t.Helper()
	h.stub.CreateApp(herokuApp, "container")
	app := h.newApp(name, func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName, a.Spec.Flake = herokuApp, flake })
	h.completeJob(h.buildJob(app), h.pushImagesTo(herokuApp))
	return h.eventuallyCondition(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

// pushImagesTo pushes a fresh web image to a Heroku app's repository, as
// `manager push` would, and returns the build's result.
func (h *harness) pushImagesTo(herokuApp string) *artifact.Result {
	h.t.Helper()
	img, err := random.Image(256, 1)
	h.g.Expect(err).NotTo(HaveOccurred())
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	h.g.Expect(err).NotTo(HaveOccurred())
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	h.g.Expect(err).NotTo(HaveOccurred())
	out, err := image.Push(h.ctx, map[string]v1.Image{"web": img}, h.registryHost, herokuApp, remote.WithAuth(&authn.Basic{Username: "_", Password: h.key}))
	h.g.Expect(err).NotTo(HaveOccurred())
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	rev := hex.EncodeToString(b)
	return &artifact.Result{Revision: rev, LockedFlake: "github:acme/shop/" + rev, Images: out}
}

func (h *harness) jobNames(app *herokunixv1.HerokuNixApp) []string {
	var jobs batchv1.JobList
	h.g.Expect(k8sClient.List(h.ctx, &jobs, client.InNamespace(h.ns), client.MatchingLabels{build.LabelApp: app.Name})).To(Succeed())
	var out []string
	for _, j := range jobs.Items {
		out = append(out, j.Name)
	}
	return out
}

// snapshot is what must not change on a refused request: each resource's
// resourceVersion and Jobs, and the Heroku calls made.
type snapshot struct {
	versions map[string]string
	jobs     map[string][]string
	calls    int
}

func (h *harness) snapshot(apps ...*herokunixv1.HerokuNixApp) snapshot {
	s := snapshot{versions: map[string]string{}, jobs: map[string][]string{}, calls: len(h.stub.Calls())}
	for _, a := range apps {
		s.versions[a.Name] = h.get(a).ResourceVersion
		s.jobs[a.Name] = h.jobNames(a)
	}
	return s
}

func TestASignedPushRebuildsTheMatchingResourceAndNoOther(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	// Repositories unique to this test: the receiver sees every namespace.
	owner := "acme-" + h.ns
	shop := h.deployedTo("shop", testHerokuApp, "github:"+owner+"/shop?ref=main")
	dev := h.deployedTo("shop-dev", "acme-shop-dev", "github:"+owner+"/shop?ref=dev")
	blog := h.deployedTo("blog", "acme-blog", "git+https://github.com/"+owner+"/blog?ref=main")
	pinned := h.deployedTo("pinned", "acme-pinned", "github:"+owner+"/shop/0123456789abcdef0123456789abcdef01234567")
	others := []*herokunixv1.HerokuNixApp{dev, blog, pinned}
	hook := h.startReceiver(receiver.Limits{PerSource: 1000, PerSourceBurst: 1000, Global: 1000, GlobalBurst: 1000})
	firstJob := shop.Status.Build.Job
	before := h.snapshot(others...)
	releases := len(h.stub.Releases(testHerokuApp))

	code, resp := hook.githubPush(t, owner+"/shop", "main", "delivery-1", hook.secret)
	if code != http.StatusAccepted || resp.Marked != 1 {
		t.Fatalf("push answered %d %+v, want 202 with one resource marked", code, resp)
	}
	// The marked resource re-resolves its ref in a new build Job; a new
	// revision is released.
	job := h.buildJob(shop)
	if job.Name == firstJob {
		t.Fatal("the push did not start a new build")
	}
	second := h.pushImagesTo(testHerokuApp)
	h.completeJob(job, second)
	h.g.Eventually(func() string { return h.get(shop).Status.Revision }).WithTimeout(30 * time.Second).Should(Equal(second.Revision))
	got := h.eventuallyCondition(shop, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased)
	if got.Status.LastHandledReconcileAt != got.Annotations[herokunixv1.ReconcileRequestAnnotation] || h.releasesMadeSince(releases) != 1 {
		t.Errorf("the push's request was not handled (%q vs %q) or made %d releases",
			got.Status.LastHandledReconcileAt, got.Annotations[herokunixv1.ReconcileRequestAnnotation], h.releasesMadeSince(releases))
	}
	// The others were not touched: the receiver patches synchronously, so
	// by its answer any mark would show.
	after := h.snapshot(others...)
	for _, a := range others {
		if cur := h.get(a); cur.Annotations[herokunixv1.ReconcileRequestAnnotation] != "" || fmt.Sprint(after.jobs[a.Name]) != fmt.Sprint(before.jobs[a.Name]) {
			t.Errorf("%s was marked (%v) or built (%v -> %v)", a.Name, cur.Annotations, before.jobs[a.Name], after.jobs[a.Name])
		}
	}
}

func TestRefusedPushEventsChangeNothing(t *testing.T) {
	h := newHarness(t)
	h.createSecret()
	owner := "acme-" + h.ns
	shop := h.deployedTo("shop", testHerokuApp, "github:"+owner+"/shop?ref=main")
	hook := h.startReceiver(receiver.Limits{PerSource: 0.001, PerSourceBurst: 5, Global: 1000, GlobalBurst: 1000})

	// An accepted delivery that marks nothing (no resource follows the
	// branch), to replay below.
	if code, resp := hook.githubPush(t, owner+"/shop", "feature", "delivery-1", hook.secret); code != http.StatusAccepted || resp.Marked != 0 {
		t.Fatalf("push answered %d %+v", code, resp)
	}

	before := h.snapshot(shop)
	for _, c := range []struct {
		name             string
		repo, branch, id string
		secret           []byte
		code             int
		status           string
	}{
		{"a bad signature", owner + "/shop", "main", "delivery-2", []byte("not-the-key"), http.StatusUnauthorized, "unauthorized"},
		{"a replay", owner + "/shop", "main", "delivery-1", hook.secret, http.StatusOK, "duplicate"},
		{"an unknown repository", owner + "/unknown", "main", "delivery-3", hook.secret, http.StatusAccepted, "accepted"},
		{"a branch no resource follows", owner + "/shop", "release", "delivery-4", hook.secret, http.StatusAccepted, "accepted"},
		// The burst of 5 per source is spent: the flood is cut off.
		{"a flood", owner + "/shop", "main", "delivery-5", hook.secret, http.StatusTooManyRequests, "too-many-requests"},
		{"a flood", owner + "/shop", "main", "delivery-6", hook.secret, http.StatusTooManyRequests, "too-many-requests"},
	} {
		code, resp := hook.githubPush(t, c.repo, c.branch, c.id, c.secret)
		if code != c.code || resp.Status != c.status || resp.Marked != 0 {
			t.Errorf("%s: answered %d %+v, want %d %s", c.name, code, resp, c.code, c.status)
		}
	}
	after := h.snapshot(shop)
	if after.versions["shop"] != before.versions["shop"] || fmt.Sprint(after.jobs) != fmt.Sprint(before.jobs) || after.calls != before.calls {
		t.Errorf("refused events changed something: resourceVersion %s -> %s, jobs %v -> %v, Heroku calls %d -> %d",
			before.versions["shop"], after.versions["shop"], before.jobs, after.jobs, before.calls, after.calls)
	}
}
