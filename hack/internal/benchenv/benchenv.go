// Package benchenv is what the controller benchmarks share: a local control
// plane, the Heroku stand-in, one image pushed to every bench app's
// repository before the clock starts, the manager with the reconciler, and
// a kubelet player that completes build Jobs with those images. The
// benchmarks measure the controller, not the build or the push.
package benchenv

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/localenv"
	"github.com/herokunix/herokunix/test/herokustub"
	"github.com/herokunix/herokunix/test/kubelet"
)

const (
	// Namespace holds every bench resource and the credentials Secret.
	Namespace = "default"
	// SecretName is the credentials Secret's name; its key is "apiKey".
	SecretName = "heroku"
	apiKey     = "bench-key"
)

// HerokuApp is the Heroku app of bench resource i.
func HerokuApp(i int) string { return fmt.Sprintf("bench-%04d", i) }

// Resource is the name of bench resource i; the kubelet player reads i back
// from a Job's app label.
func Resource(i int) string { return fmt.Sprintf("app-%04d", i) }

// Env is a running bench environment.
type Env struct {
	Config       *rest.Config
	Scheme       *runtime.Scheme
	Client       client.WithWatch
	Stub         *herokustub.Server
	APIURL       string
	RegistryHost string
	// Results are the build results the kubelet player reports, by
	// resource index: lockedFlake(i) at a fixed revision, the pushed image.
	Results []*artifact.Result
	// HerokuCalls counts the calls the controller's Heroku clients made or
	// tried, HerokuRefused those they refused without a request (a 429
	// seen, the client-side share spent), and BuildsCompleted the build
	// Jobs the kubelet player completed.
	HerokuCalls, HerokuRefused, BuildsCompleted atomic.Int64

	stop []func()
}

// Start brings up the control plane (run from the repository root), the
// stand-in with n container apps, the credentials Secret, and pushes one
// image to each app's web repository.
// Options of the stand-in may be changed by stub (its rate-limit budget).
func Start(ctx context.Context, n int, lockedFlake func(i int) string, stub ...func(*herokustub.Options)) (*Env, error) {
	log.SetLogger(logr.Discard()) // the benches measure, they do not narrate
	cp, err := localenv.NewControlPlane(".")
	if err != nil {
		return nil, err
	}
	cfg, err := cp.Start()
	if err != nil {
		return nil, err
	}
	e := &Env{Config: cfg, stop: []func(){func() { _ = cp.Stop() }}}
	cfg.QPS, cfg.Burst = 500, 1000 // measure the controller, not client-side throttling

	e.Scheme = runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(e.Scheme)
	_ = herokunixv1.AddToScheme(e.Scheme)
	if e.Client, err = client.NewWithWatch(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		e.Stop()
		return nil, err
	}

	stubOpts := herokustub.Options{APIKey: apiKey}
	for _, f := range stub {
		f(&stubOpts)
	}
	e.Stub = herokustub.New(stubOpts)
	api := httptest.NewServer(e.Stub.APIHandler())
	reg := httptest.NewServer(e.Stub.RegistryHandler())
	e.stop = append(e.stop, func() { e.Stub.Close(); api.Close(); reg.Close() })
	e.APIURL, e.RegistryHost = api.URL, strings.TrimPrefix(reg.URL, "http://")

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: Namespace}, StringData: map[string]string{"apiKey": apiKey}}
	if err := e.Client.Create(ctx, secret); err != nil {
		e.Stop()
		return nil, err
	}
	img, err := dockerImage()
	if err != nil {
		e.Stop()
		return nil, err
	}
	e.Results = make([]*artifact.Result, n)
	for i := range n {
		e.Stub.CreateApp(HerokuApp(i), "container")
		imgs, err := image.Push(ctx, map[string]v1.Image{"web": img}, e.RegistryHost, HerokuApp(i), remote.WithAuth(heroku.RegistryAuth(apiKey)))
		if err != nil {
			e.Stop()
			return nil, err
		}
		e.Results[i] = &artifact.Result{Revision: strings.Repeat("a", 40), LockedFlake: lockedFlake(i), Images: imgs}
	}
	return e, nil
}

// Stop tears everything down, last started first.
func (e *Env) Stop() {
	for i := len(e.stop) - 1; i >= 0; i-- {
		e.stop[i]()
	}
}

// NewManager makes the manager with the reconciler (Job builder, Heroku
// clients of the stand-in at requestsPerHour per account) set up; the
// caller adds what else it runs, then starts it.
func (e *Env) NewManager(ctx context.Context, concurrency, requestsPerHour int) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{Scheme: e.Scheme, Cache: controllers.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	r, err := controllers.NewReconciler(mgr, controllers.ReconcilerConfig{
		Builder: build.NewJobBuilder(mgr, build.JobImages{Tools: "t", Nix: "n", RegistryHost: e.RegistryHost}),
		NewHeroku: func(k string) (controllers.HerokuAPI, error) {
			return heroku.New(heroku.Options{APIKey: k, BaseURL: e.APIURL, RegistryHost: e.RegistryHost, RequestsPerHour: requestsPerHour,
				Observer: callCounter{e}})
		},
	})
	if err != nil {
		return nil, err
	}
	if err := r.SetupWithManager(ctx, mgr, controllers.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// callCounter counts the Heroku clients' calls.
type callCounter struct{ e *Env }

func (c callCounter) ObserveCall(_ string, status int) {
	c.e.HerokuCalls.Add(1)
	if status == 0 {
		c.e.HerokuRefused.Add(1)
	}
}

func (callCounter) ObserveRateLimitRemaining(int) {}

// PlayKubelet completes every build Job of the bench namespace with its
// resource's result, until ctx ends. Before it completes a Job it updates
// the Job's status as the Job controller does while its pod starts and
// runs (active, then ready), so the controller sees the Job events a real
// cluster sends.
func (e *Env) PlayKubelet(ctx context.Context) {
	done := map[string]bool{}
	var mu sync.Mutex
	for ctx.Err() == nil {
		var jobs batchv1.JobList
		if err := e.Client.List(ctx, &jobs, client.InNamespace(Namespace)); err != nil {
			return
		}
		for i := range jobs.Items {
			job := &jobs.Items[i]
			mu.Lock()
			seen := done[job.Name]
			done[job.Name] = true
			mu.Unlock()
			if seen {
				continue
			}
			var idx int
			if _, err := fmt.Sscanf(job.Labels[build.LabelApp], "app-%04d", &idx); err != nil || idx >= len(e.Results) {
				continue
			}
			if err := runJob(ctx, e.Client, job); err != nil {
				continue
			}
			if kubelet.CompleteJob(ctx, e.Client, job, e.Results[idx]) == nil {
				e.BuildsCompleted.Add(1)
			}
		}
		time.Sleep(50 * time.Millisecond) // a player's poll, not synchronisation
	}
}

// runJob updates job's status as the Job controller does while its pod
// starts (active) and becomes ready, then clears both as the pod ends.
func runJob(ctx context.Context, c client.Client, job *batchv1.Job) error {
	job.Status.Active = 1
	if err := c.Status().Update(ctx, job); err != nil {
		return err
	}
	job.Status.Ready = ptr.To[int32](1)
	if err := c.Status().Update(ctx, job); err != nil {
		return err
	}
	job.Status.Active, job.Status.Ready = 0, ptr.To[int32](0)
	return nil
}

// dockerImage is a small Docker schema 2 linux/amd64 image.
func dockerImage() (v1.Image, error) {
	img, err := random.Image(1024, 1)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}
