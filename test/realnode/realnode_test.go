package realnode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/test/fixtures"
)

const buildTimeout = 6 * time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace makes a namespace with the Heroku key Secret in it.
func newNamespace(t *testing.T, ctx context.Context, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := env.c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = env.c.Delete(context.Background(), ns)
		}
	})
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: ns.Name}, StringData: map[string]string{"apiKey": env.key}}
	if err := env.c.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func newApp(t *testing.T, ctx context.Context, ns, herokuApp, flake string, web herokunixv1.Process, mutate ...func(*herokunixv1.HerokuNixApp)) *herokunixv1.HerokuNixApp {
	t.Helper()
	env.stub.CreateApp(herokuApp, "container")
	app := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName:              herokuApp,
			Flake:                flake,
			Processes:            map[string]herokunixv1.Process{"web": web},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
		},
	}
	for _, m := range mutate {
		m(app)
	}
	if err := env.c.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	return app
}

// waitReady waits for the Ready condition to reach status and reason, and
// fails at once when it settles on another terminal reason.
func waitReady(t *testing.T, ctx context.Context, app *herokunixv1.HerokuNixApp, status metav1.ConditionStatus, reason string) *herokunixv1.HerokuNixApp {
	t.Helper()
	got := &herokunixv1.HerokuNixApp{}
	var last string
	ctx, cancelWait := context.WithCancelCause(ctx)
	defer cancelWait(nil)
	err := waitFor(ctx, "Ready="+string(status)+" "+reason, buildTimeout, func() error {
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(app), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
		if c == nil {
			return fmt.Errorf("no Ready condition")
		}
		if s := fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message); s != last {
			t.Logf("%s/%s Ready=%s", app.Namespace, app.Name, s)
			last = s
		}
		if c.Status != status || c.Reason != reason {
			err := fmt.Errorf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
			if settled[c.Reason] {
				cancelWait(err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		dumpBuildPods(t, ctx, app.Namespace)
		t.Fatal(err)
	}
	return got
}

// settled are reasons that end a deploy until the spec changes.
var settled = map[string]bool{
	herokunixv1.ReasonBuildFailed: true, herokunixv1.ReasonAppConflict: true, herokunixv1.ReasonBuildPodRefused: true,
	herokunixv1.ReasonCredentialsNotFound: true, herokunixv1.ReasonUnauthorized: true,
}

// dumpBuildPods logs the build pods' states, to explain a failure.
func dumpBuildPods(t *testing.T, ctx context.Context, ns string) {
	var pods corev1.PodList
	if err := env.c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return
	}
	for _, p := range pods.Items {
		b, _ := json.Marshal(p.Status)
		t.Logf("pod %s: %s", p.Name, b)
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			t.Logf("log of %s/%s:\n%s", p.Name, c.Name, podLog(ctx, ns, p.Name, c.Name))
		}
	}
}

func podLog(ctx context.Context, ns, pod, container string) string {
	b, err := env.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}

// TestBuildImageContract runs the checks a build relies on in the Nix
// image (docs/build-image.md), in a pod of the cluster.
func TestBuildImageContract(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, ctx, "contract", nil)
	script := strings.Join([]string{
		"set -ex", // the failing check ends the log, which the termination message falls back to
		"command -v nix",
		"nix --version",
		`test "$(id -u)" = 0`,
		"test -w /nix/store && test -w /nix/var/nix",
		"test -n \"$HOME\" && test -w \"$HOME\" && test -w /tmp",
		"nix show-config | grep -qx 'sandbox = false'",
		"nix show-config | grep -q '^experimental-features = .*flakes'",
		"nix show-config | grep -qx 'build-users-group = '",
		// A store path built and read back, single-user, no daemon.
		`nix build --out-link /tmp/contract --impure --expr 'builtins.derivation { name = "contract"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo ok > $out" ]; }'`,
		`test "$(cat /tmp/contract)" = ok`,
		"echo contract-ok > /dev/termination-log",
	}, "\n")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "contract", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name: "nix", Image: nixImage, ImagePullPolicy: corev1.PullNever,
				Command:                  []string{"/bin/sh", "-c", script},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				// What the build container of a Job gets.
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)},
			}},
		},
	}
	if err := env.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var term *corev1.ContainerStateTerminated
	if err := waitFor(ctx, "the contract pod to finish", 3*time.Minute, func() error {
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Terminated != nil {
				term = cs.State.Terminated
				return nil
			}
		}
		return fmt.Errorf("phase %s", pod.Status.Phase)
	}); err != nil {
		t.Fatal(err)
	}
	if term.ExitCode != 0 || strings.TrimSpace(term.Message) != "contract-ok" {
		t.Fatalf("the Nix image breaks the contract of spec.build.image: exit %d: %s", term.ExitCode, term.Message)
	}
}

// TestEveryFixtureKindIsReleasedThroughJobBuilds deploys each fixture kind
// through a real build Job and runs the released web image.
func TestEveryFixtureKindIsReleasedThroughJobBuilds(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		web     herokunixv1.Process
	}{
		{fixtures.Closure, herokunixv1.Process{Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server"}}},
		{fixtures.DockerArchive, herokunixv1.Process{Attribute: "packages.x86_64-linux.image"}},
		{fixtures.Nix2Container, herokunixv1.Process{Attribute: "packages.x86_64-linux.image"}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			ns := newNamespace(t, ctx, "fixture-"+tc.fixture, nil)
			herokuApp := ns // unique: a kept cluster holds the apps of earlier runs
			app := newApp(t, ctx, ns, herokuApp, serveFlake(t, tc.fixture), tc.web)
			got := waitReady(t, ctx, app, metav1.ConditionTrue, herokunixv1.ReasonReleased)

			web := got.Status.Images["web"]
			rels := env.stub.Releases(herokuApp)
			cur := rels[len(rels)-1]
			if !cur.Current || cur.Images["web"] != web.ImageID {
				t.Fatalf("Heroku runs %+v, want web image %s", cur, web.ImageID)
			}
			assertBuiltByJob(t, ctx, ns)
			assertKeyNowhere(t, ctx, ns, got)
			runReleased(t, ctx, ns, herokuApp, web.Digest)
		})
	}
}

// assertBuiltByJob: the build ran in a Job pod with the three containers,
// and the key reached only the push container.
func assertBuiltByJob(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	var jobs batchv1.JobList
	if err := env.c.List(ctx, &jobs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) == 0 {
		t.Fatal("no build Job")
	}
	for _, j := range jobs.Items {
		if !jobDone(&j, batchv1.JobComplete) {
			t.Errorf("build Job %s is not Complete: %+v", j.Name, j.Status.Conditions)
		}
		spec := j.Spec.Template.Spec
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			for _, e := range c.Env {
				if c.Name != "push" && (e.Name == "HEROKU_API_KEY" || e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil) {
					t.Errorf("Job %s: container %s is given %s", j.Name, c.Name, e.Name)
				}
				if strings.Contains(e.Value, env.key) {
					t.Errorf("Job %s: container %s has the key in %s", j.Name, c.Name, e.Name)
				}
			}
		}
	}
}

func jobDone(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// assertKeyNowhere: the key is in no log of a build pod or the manager, no
// event and no status.
func assertKeyNowhere(t *testing.T, ctx context.Context, ns string, app *herokunixv1.HerokuNixApp) {
	t.Helper()
	for _, n := range []string{ns, managerNamespace} {
		var pods corev1.PodList
		if err := env.c.List(ctx, &pods, client.InNamespace(n)); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
				if strings.Contains(podLog(ctx, n, p.Name, c.Name), env.key) {
					t.Errorf("the key is in the log of %s/%s container %s", n, p.Name, c.Name)
				}
			}
		}
		var events corev1.EventList
		if err := env.c.List(ctx, &events, client.InNamespace(n)); err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, env.key) {
				t.Errorf("the key is in event %s: %s", e.Name, e.Message)
			}
		}
	}
	b, _ := json.Marshal(app.Status)
	if strings.Contains(string(b), env.key) {
		t.Errorf("the key is in the status: %s", b)
	}
}

// runReleased pulls the released image back from the registry, as Heroku
// would, imports it into the node and runs it with $PORT set.
func runReleased(t *testing.T, ctx context.Context, ns, herokuApp, digest string) {
	t.Helper()
	ref, err := name.ParseReference(env.registry + "/" + herokuApp + "/web@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "_", Password: env.key}))
	if err != nil {
		t.Fatalf("pulling the released image: %v", err)
	}
	local := "herokunix.local/released/" + herokuApp + ":" + strings.TrimPrefix(digest, "sha256:")[:12]
	tag, err := name.NewTag(local)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := t.TempDir() + "/image.tar"
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "ctr", "--address", env.state.Containerd, "-n", "k8s.io", "images", "import", tarPath).CombinedOutput(); err != nil {
		t.Fatalf("importing the released image: %v\n%s", err, out)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name: "web", Image: local, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{{Name: "PORT", Value: "8080"}},
			}},
		},
	}
	if err := env.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var body string
	if err := waitFor(ctx, "the released web process to answer on $PORT", 2*time.Minute, func() error {
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if pod.Status.PodIP == "" {
			return fmt.Errorf("pod %s, no IP yet", pod.Status.Phase)
		}
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			return fmt.Errorf("web exited: %s", podLog(ctx, ns, pod.Name, "web"))
		}
		resp, err := http.Get("http://" + pod.Status.PodIP + ":8080/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if body != fixtures.ServerGreeting {
		t.Fatalf("the released web process answered %q, want %q", body, fixtures.ServerGreeting)
	}
}

// flakeOf serves a one-package flake whose build runs script.
func flakeOf(t *testing.T, name, script string) string {
	t.Helper()
	dir := t.TempDir()
	flake := fmt.Sprintf(`{
  outputs = { self }: {
    packages.x86_64-linux.server = builtins.derivation {
      name = %q;
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" %q ];
    };
  };
}
`, name, script)
	if err := os.WriteFile(dir+"/flake.nix", []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return serveDir(t, name, dir)
}

var serverProcess = herokunixv1.Process{Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server"}}

// The failure paths only a kubelet shows, each ending in a condition a
// user can act on, with Heroku left untouched.
func TestBuildFailuresOnARealNode(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		ns := newNamespace(t, ctx, "deadline", nil)
		app := newApp(t, ctx, ns, ns, flakeOf(t, "sleeper", "sleep 3600"), serverProcess,
			func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.Timeout = &metav1.Duration{Duration: time.Minute} })
		got := waitReady(t, ctx, app, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed)
		c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
		if !strings.Contains(c.Message, "DeadlineExceeded") && !strings.Contains(strings.ToLower(c.Message), "timed out") &&
			!strings.Contains(c.Message, "deadline") {
			t.Errorf("the condition does not say the build ran out of time: %s", c.Message)
		}
		assertNoRelease(t, ns)
	})
	t.Run("out of memory", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		ns := newNamespace(t, ctx, "oom", nil)
		// Doubles a shell string until the cgroup's limit kills it.
		app := newApp(t, ctx, ns, ns, flakeOf(t, "hog", `s=xxxxxxxx; while :; do s="$s$s"; done`), serverProcess,
			func(a *herokunixv1.HerokuNixApp) {
				a.Spec.Build.Resources = &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: resourceMust("192Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resourceMust("192Mi")},
				}
			})
		got := waitReady(t, ctx, app, metav1.ConditionFalse, herokunixv1.ReasonBuildFailed)
		c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionReady)
		if !strings.Contains(c.Message, "OOMKilled") && !strings.Contains(c.Message, "memory") {
			t.Errorf("the condition does not say the build ran out of memory: %s", c.Message)
		}
		assertNoRelease(t, ns)
	})
	t.Run("restricted namespace", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		ns := newNamespace(t, ctx, "restricted", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		app := newApp(t, ctx, ns, ns, serveFlake(t, fixtures.Closure), serverProcess)
		waitReady(t, ctx, app, metav1.ConditionFalse, herokunixv1.ReasonBuildPodRefused)
		assertNoRelease(t, ns)
	})
}

func assertNoRelease(t *testing.T, herokuApp string) {
	t.Helper()
	for _, r := range env.stub.Releases(herokuApp) {
		if len(r.Images) > 0 {
			t.Errorf("a failed build released %+v", r)
		}
	}
}

// narrowed is when TestASecretTheManagerMayNotRead had the manager's
// Secret reads denied on purpose (zero: never); the audit check forgives
// the denials of that window alone.
var narrowed struct{ from, until time.Time }

// TestASecretTheManagerMayNotRead: an operator narrows the installed RBAC
// so the manager may list and watch Secrets but not get one (it reads the
// key with get). A HerokuNixApp then stalls with ReadForbidden naming the
// Secret, no build runs and Heroku is untouched; once get is granted back
// and the Secret touched, it deploys.
func TestASecretTheManagerMayNotRead(t *testing.T) {
	ctx := testContext(t)
	role := managerSecretsRole(t, ctx)
	granted := role.DeepCopy().Rules
	var narrowedRules []rbacv1.PolicyRule
	for _, r := range role.DeepCopy().Rules {
		if i := slices.Index(r.Resources, "secrets"); i >= 0 && slices.Contains(r.APIGroups, "") {
			r.Resources = slices.Delete(r.Resources, i, i+1)
			narrowedRules = append(narrowedRules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"}})
			if len(r.Resources) == 0 {
				continue
			}
		}
		narrowedRules = append(narrowedRules, r)
	}
	ns := newNamespace(t, ctx, "forbidden", nil)
	// setRules changes the role and waits until the API server's
	// authorizer answers for it as the rules say.
	setRules := func(ctx context.Context, rules []rbacv1.PolicyRule, mayGet bool) error {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var current rbacv1.ClusterRole
			if err := env.c.Get(ctx, client.ObjectKeyFromObject(role), &current); err != nil {
				return err
			}
			current.Rules = rules
			return env.c.Update(ctx, &current)
		})
		if err != nil {
			return err
		}
		return waitFor(ctx, fmt.Sprintf("the authorizer to answer get secrets = %v", mayGet), time.Minute, func() error {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               "system:serviceaccount:" + managerNamespace + ":" + managerName,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets", Name: "heroku"},
			}}
			if err := env.c.Create(ctx, review); err != nil {
				return err
			}
			if review.Status.Allowed != mayGet {
				return fmt.Errorf("allowed = %v", review.Status.Allowed)
			}
			return nil
		})
	}
	narrowed.from = time.Now()
	restored := false
	t.Cleanup(func() {
		if restored {
			return
		}
		// The test's own context may be spent.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := setRules(ctx, granted, true); err != nil {
			t.Errorf("restoring the manager's RBAC: %v", err)
		}
		narrowed.until = time.Now()
	})
	if err := setRules(ctx, narrowedRules, false); err != nil {
		t.Fatal(err)
	}

	app := newApp(t, ctx, ns, ns, serveFlake(t, fixtures.Closure), serverProcess)
	got := waitReady(t, ctx, app, metav1.ConditionFalse, herokunixv1.ReasonReadForbidden)
	if c := meta.FindStatusCondition(got.Status.Conditions, herokunixv1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue ||
		!strings.Contains(c.Message, "Secret "+ns+"/heroku") {
		t.Errorf("Stalled should be True naming the Secret: %+v", c)
	}
	var jobs batchv1.JobList
	if err := env.c.List(ctx, &jobs, client.InNamespace(ns)); err != nil || len(jobs.Items) > 0 {
		t.Errorf("a build ran without the key: %d Jobs, %v", len(jobs.Items), err)
	}
	assertNoRelease(t, ns)

	if err := setRules(ctx, granted, true); err != nil {
		t.Fatal(err)
	}
	restored, narrowed.until = true, time.Now()
	var secret corev1.Secret
	if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "heroku"}, &secret); err != nil {
		t.Fatal(err)
	}
	secret.Annotations = map[string]string{"herokunix.dev/test": "granted"}
	if err := env.c.Update(ctx, &secret); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ctx, app, metav1.ConditionTrue, herokunixv1.ReasonReleased)
}

// managerSecretsRole is the installed ClusterRole that grants the
// manager's ServiceAccount its reads of Secrets.
func managerSecretsRole(t *testing.T, ctx context.Context) *rbacv1.ClusterRole {
	t.Helper()
	var bindings rbacv1.ClusterRoleBindingList
	if err := env.c.List(ctx, &bindings); err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings.Items {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == managerNamespace && s.Name == managerName
		}) {
			continue
		}
		var role rbacv1.ClusterRole
		if err := env.c.Get(ctx, client.ObjectKey{Name: b.RoleRef.Name}, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") {
				return &role
			}
		}
	}
	t.Fatal("no ClusterRole bound to the manager grants it Secrets")
	return nil
}

// TestManagerNeverNeededAVerbItsRBACLacks reads the API server's audit
// log: no request of the manager's ServiceAccount was forbidden.
func TestManagerNeverNeededAVerbItsRBACLacks(t *testing.T) {
	// Runs last (tests run in file order): after every deploy, and after
	// the one denial a test provoked on purpose, which it leaves out.
	f, err := os.Open(env.state.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user := "system:serviceaccount:" + managerNamespace + ":" + managerName
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	seen := 0
	for sc.Scan() {
		var ev struct {
			User           struct{ Username string }  `json:"user"`
			Verb           string                     `json:"verb"`
			RequestURI     string                     `json:"requestURI"`
			ObjectRef      *struct{ Resource string } `json:"objectRef"`
			Received       time.Time                  `json:"requestReceivedTimestamp"`
			ResponseStatus *struct{ Code int }        `json:"responseStatus"`
			Annotations    map[string]string          `json:"annotations"`
		}
		// A kept cluster's log holds earlier runs too: judge this one.
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.User.Username != user || ev.Received.Before(suiteStart) {
			continue
		}
		seen++
		// The authorizer's decision, not any 403: admission also answers
		// 403, e.g. for events in a namespace being deleted.
		provoked := ev.Verb == "get" && ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets" &&
			!narrowed.from.IsZero() && !ev.Received.Before(narrowed.from) && (narrowed.until.IsZero() || !ev.Received.After(narrowed.until))
		if ev.Annotations["authorization.k8s.io/decision"] == "forbid" && !provoked {
			t.Errorf("the manager was forbidden to %s %s", ev.Verb, ev.RequestURI)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Fatalf("the audit log has no request of %s", user)
	}
}
