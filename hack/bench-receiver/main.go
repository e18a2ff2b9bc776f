// Command bench-receiver measures how fast a push reaches a build: N
// HerokuNixApps (default 200), each following the main branch of its own
// repository and deployed to its own Heroku app, run against a real
// kube-apiserver and the Heroku stand-in. Once all are deployed, it sends
// signed GitHub push events to the receiver (served as the manager serves
// it, over the manager's cached client) and reports the time from sending
// an event to the new build Job appearing, one event at a time and for a
// burst of events at once.
//
//	go run ./hack/bench-receiver [-n 200] [-events 20] [-burst 50]
//
// Every event is for a resource of its own (events + burst <= n).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/hack/internal/benchenv"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/receiver"
)

func main() {
	n := flag.Int("n", 200, "number of HerokuNixApps")
	events := flag.Int("events", 20, "push events sent one at a time")
	burst := flag.Int("burst", 50, "push events sent at once, each for another resource")
	concurrency := flag.Int("concurrency", 4, "reconciles at once")
	flag.Parse()
	if *events+*burst > *n {
		fmt.Fprintln(os.Stderr, "bench-receiver: -events plus -burst must not exceed -n (each event is for a resource of its own)")
		os.Exit(2)
	}
	if err := run(*n, *events, *burst, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench-receiver:", err)
		os.Exit(1)
	}
}

const ns = benchenv.Namespace

func appName(i int) string { return benchenv.Resource(i) }
func repo(i int) string    { return fmt.Sprintf("acme/shop-%04d", i) }

func run(n, events, burst, concurrency int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Every build a Job starts completes with one pushed image: the bench
	// is about the path from event to build, not the build.
	env, err := benchenv.Start(ctx, n, func(i int) string { return "github:" + repo(i) + "/" + strings.Repeat("a", 40) })
	if err != nil {
		return err
	}
	defer env.Stop()
	c := env.Client
	hookKey := []byte("bench-webhook-key")
	hookSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "herokunix-webhooks", Namespace: ns}, Data: map[string][]byte{receiver.SecretKeyGitHub: hookKey}}
	if err := c.Create(ctx, hookSecret); err != nil {
		return err
	}

	// All apps share one stand-in account; its hourly budget would pace
	// the bench, which measures the path from event to build.
	mgr, err := env.NewManager(ctx, concurrency, 1<<30)
	if err != nil {
		return err
	}
	// The receiver as the manager runs it: the manager's cached client,
	// the Secret read through the API reader.
	hook := httptest.NewServer(receiver.New(receiver.Options{
		Client:  mgr.GetClient(),
		Secrets: &receiver.SecretSource{Reader: mgr.GetAPIReader(), Name: client.ObjectKey{Namespace: ns, Name: "herokunix-webhooks"}},
		Limits:  receiver.Limits{PerSource: 1000, PerSourceBurst: 1000, Global: 1000, GlobalBurst: 1000},
		Log:     logr.Discard(),
	}))
	defer hook.Close()
	go func() { _ = mgr.Start(ctx) }()
	go env.PlayKubelet(ctx)

	for i := range n {
		app := &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Name: appName(i), Namespace: ns},
			Spec: herokunixv1.HerokuNixAppSpec{
				AppName: benchenv.HerokuApp(i), Flake: "github:" + repo(i) + "?ref=main",
				Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](1)}},
				CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: benchenv.SecretName, Key: "apiKey"},
			},
		}
		if err := c.Create(ctx, app); err != nil {
			return err
		}
	}
	deployStart := time.Now()
	if err := waitReady(ctx, c, n); err != nil {
		return err
	}
	fmt.Printf("apps: %d, concurrency: %d; all deployed in %s\n", n, concurrency, time.Since(deployStart).Round(time.Millisecond))

	// Job creations, seen through a watch as they happen.
	created, err := watchJobs(ctx, c)
	if err != nil {
		return err
	}
	send := func(i int, delivery string) error {
		body, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "after": strings.Repeat("b", 40),
			"repository": map[string]any{"full_name": repo(i), "html_url": "https://github.com/" + repo(i), "default_branch": "main"},
		})
		req, _ := http.NewRequest(http.MethodPost, hook.URL+"/hooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", receiver.Sign(hookKey, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("push for %s answered %d", repo(i), resp.StatusCode)
		}
		return nil
	}

	// Each event is for a resource no other event touched: a push that
	// arrives while that resource's previous refresh is still running is
	// absorbed by it (see docs/webhooks.md), which would measure that
	// build, not the path from event to build. Resources are spread over
	// the list.
	pick := func(k int) int { return (k * 7919) % n } // 7919 is prime: distinct for k < n unless n is a multiple
	if n%7919 == 0 {
		pick = func(k int) int { return k }
	}
	// One event at a time.
	var single []time.Duration
	for k := range events {
		i := pick(k)
		start := time.Now()
		if err := send(i, fmt.Sprintf("single-%d", k)); err != nil {
			return err
		}
		at, err := created.next(ctx, appName(i), start)
		if err != nil {
			return err
		}
		single = append(single, at.Sub(start))
	}
	// A burst: events for many resources at once.
	burstStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for k := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(pick(events+k), fmt.Sprintf("burst-%d", k)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var burstLat []time.Duration
	for k := range burst {
		at, err := created.next(ctx, appName(pick(events+k)), burstStart)
		if err != nil {
			return err
		}
		burstLat = append(burstLat, at.Sub(burstStart))
	}

	fmt.Printf("push event -> build Job created, one event at a time (%d events): %s\n", len(single), summary(single))
	fmt.Printf("push event -> build Job created, %d events at once: %s\n", burst, summary(burstLat))
	return nil
}

func summary(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, max %s", q(0.5), q(0.9), ds[len(ds)-1].Round(100*time.Microsecond))
}

// jobCreations records when each resource's build Jobs were first seen.
type jobCreations struct {
	mu   sync.Mutex
	seen map[string][]time.Time // resource -> creation sightings
	cond *sync.Cond
}

func watchJobs(ctx context.Context, c client.WithWatch) (*jobCreations, error) {
	var list batchv1.JobList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	w, err := c.Watch(ctx, &batchv1.JobList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return nil, err
	}
	j := &jobCreations{seen: map[string][]time.Time{}}
	j.cond = sync.NewCond(&j.mu)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added {
				continue
			}
			job, ok := ev.Object.(*batchv1.Job)
			if !ok {
				continue
			}
			now := time.Now()
			j.mu.Lock()
			app := job.Labels[build.LabelApp]
			j.seen[app] = append(j.seen[app], now)
			j.cond.Broadcast()
			j.mu.Unlock()
		}
	}()
	return j, nil
}

// next waits for a Job of app created after since.
func (j *jobCreations) next(ctx context.Context, app string, since time.Time) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	stop := context.AfterFunc(ctx, func() { j.mu.Lock(); j.cond.Broadcast(); j.mu.Unlock() })
	defer stop()
	timer := time.AfterFunc(time.Until(deadline), func() { j.mu.Lock(); j.cond.Broadcast(); j.mu.Unlock() })
	defer timer.Stop()
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		for _, at := range j.seen[app] {
			if at.After(since) {
				return at, nil
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no build Job for %s within 2m of its push", app)
		}
		j.cond.Wait()
	}
}

// waitReady polls until n resources are Ready for their generation.
func waitReady(ctx context.Context, c client.Client, n int) error {
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		var list herokunixv1.HerokuNixAppList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		ready := 0
		for _, a := range list.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, herokunixv1.ConditionReady) && a.Status.ObservedGeneration == a.Generation {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // a benchmark's progress poll, not test synchronisation
	}
	return fmt.Errorf("not all %d resources became Ready in time", n)
}
