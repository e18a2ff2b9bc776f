package build

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/test/kubelet"
)

// jobBuilderOnFake returns a JobBuilder on a fake API server, the app, and
// the build Job it started.
func jobBuilderOnFake(t *testing.T) (*JobBuilder, client.Client, *herokunixv1.HerokuNixApp, Desired, *batchv1.Job) {
	t.Helper()
	scheme := testScheme(t)
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&batchv1.Job{}, &corev1.Pod{}).Build()
	app := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team-a", UID: "uid-1"},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName: "acme-shop", Flake: "github:acme/shop",
			Processes:            map[string]herokunixv1.Process{"web": {Attribute: "web"}},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku"},
		},
	}
	j := &JobBuilder{Client: c, APIReader: c, Scheme: scheme, Images: JobImages{Tools: "tools", Nix: "nix", RegistryHost: "registry.heroku.com"}}
	want := DesiredFor(app, time.Now(), false)
	ctx := context.Background()
	if _, err := j.Ensure(ctx, app, want, ""); err != nil {
		t.Fatal(err)
	}
	var job batchv1.Job
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: want.Name}, &job); err != nil {
		t.Fatal(err)
	}
	return j, c, app, want, &job
}

// ensureAfterFailing is what Ensure says of a builder's Job once fail
// made it fail.
func ensureAfterFailing(t *testing.T, fail func(context.Context, client.Client, *batchv1.Job) error) State {
	t.Helper()
	j, c, app, want, job := jobBuilderOnFake(t)
	ctx := context.Background()
	if err := fail(ctx, c, job); err != nil {
		t.Fatal(err)
	}
	state, err := j.Ensure(ctx, app, want, "")
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// A push container that wrote a credentials failure makes a failed build
// whose Failure says so; a push that failed otherwise, or a build
// container that wrote the same text (it runs user code), does not.
func TestAFailedJobIsACredentialsFailureOnlyOnThePushContainersWord(t *testing.T) {
	unauthorized, err := (&artifact.Failure{Failure: artifact.FailureUnauthorized, Message: "UNAUTHORIZED: authentication required"}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		fail func(context.Context, client.Client, *batchv1.Job) error
		want artifact.FailureKind
	}{
		"push wrote a credentials failure": {func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailPush(ctx, c, job, string(unauthorized))
		}, artifact.FailureUnauthorized},
		"push failed otherwise": {func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailPush(ctx, c, job, "manager push: pushing to registry.heroku.com: UNAUTHORIZED")
		}, ""},
		"build wrote a credentials failure": {func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailJob(ctx, c, job, string(unauthorized))
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			state := ensureAfterFailing(t, tc.fail)
			if state.Phase != Failed || state.Failure != tc.want {
				t.Errorf("state %+v, want failed with failure %q", state, tc.want)
			}
			if tc.want != "" && !strings.Contains(state.Message, "authentication required") {
				t.Errorf("message %q does not carry the registry's answer", state.Message)
			}
		})
	}
}

// TestAFailedJobSaysWhetherItsFailureMayPass: an evicted pod, a deadline
// and a forge or registry answering 5xx may pass when run again; an
// evaluation error, a missing ref (404), a refused token and an
// out-of-memory kill are the build's own.
func TestAFailedJobSaysWhetherItsFailureMayPass(t *testing.T) {
	failBuild := func(log string) func(context.Context, client.Client, *batchv1.Job) error {
		return func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailJob(ctx, c, job, log)
		}
	}
	for name, tc := range map[string]struct {
		fail func(context.Context, client.Client, *batchv1.Job) error
		want string
	}{
		"evicted":          {kubelet.EvictJob, TransientEvicted},
		"deadline":         {kubelet.ExpireJob, TransientDeadline},
		"forge 502":        {failBuild("error: unable to download 'https://api.github.com/repos/acme/shop/tarball/abc': HTTP error 502 (curl error: no error)"), TransientNetwork},
		"forge unresolved": {failBuild("error: unable to download 'https://github.com/acme/shop/archive/abc.tar.gz': Couldn't resolve host name (6)"), TransientNetwork},
		"git 503":          {failBuild("fatal: unable to access 'https://git.example/acme/shop/': The requested URL returned error: 503"), TransientNetwork},
		"registry 503": {func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailPush(ctx, c, job, "manager push: PUT https://registry.heroku.com/v2/acme-shop/web/blobs/uploads/x: unexpected status code 503 Service Unavailable")
		}, TransientNetwork},
		"evaluation error": {failBuild("error: attribute 'web' missing\n       at «none»:0: (source not available)"), ""},
		"missing ref":      {failBuild("error: unable to download 'https://api.github.com/repos/acme/shop/tarball/abc': HTTP error 404"), ""},
		"refused token":    {failBuild("error: unable to download 'https://api.github.com/repos/acme/private/tarball/abc': HTTP error 401"), ""},
		"an empty log": {func(ctx context.Context, c client.Client, job *batchv1.Job) error {
			return kubelet.FailJob(ctx, c, job, "")
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			state := ensureAfterFailing(t, tc.fail)
			if state.Phase != Failed || state.Transient != tc.want {
				t.Errorf("state %+v, want failed with transient cause %q", state, tc.want)
			}
		})
	}
}

// TestAnOutOfMemoryBuildSaysToGiveItMore: an OOMKilled build container is
// not retried as is; its message says what re-runs it.
func TestAnOutOfMemoryBuildSaysToGiveItMore(t *testing.T) {
	job := &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}}}}
	pods := []corev1.Pod{{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{{Name: "build",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}}}}
	msg := failureMessage(job, pods)
	if !strings.Contains(msg, "OOMKilled") || !strings.Contains(msg, "spec.build.resources") {
		t.Errorf("message %q does not say the build ran out of memory and what to change", msg)
	}
	if got := transientJob(job, pods, msg); got != "" {
		t.Errorf("an out-of-memory build is taken as passing: %q", got)
	}
}
