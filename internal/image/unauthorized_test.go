package image

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herokunix/herokunix/internal/heroku"
	"github.com/herokunix/herokunix/test/herokustub"
)

// herokuRegistry serves the Heroku stand-in's registry, which answers 401
// UNAUTHORIZED for a wrong key and for a repository the key cannot reach
// (heroku.md "Registry").
func herokuRegistry(t *testing.T, key string, apps ...string) (*herokustub.Server, string) {
	t.Helper()
	stub := herokustub.New(herokustub.Options{APIKey: key})
	for _, a := range apps {
		stub.CreateApp(a, "container")
	}
	srv := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() { srv.Close(); stub.Close() })
	return stub, strings.TrimPrefix(srv.URL, "http://")
}

// A 401 on the fetch of the previous image (to reuse its layers) is the
// registry refusing the key, not "no previous image": the push stops with
// an error IsUnauthorized recognises, and nothing is pushed.
func TestARefusedKeyIsACredentialsFailureNotANewRepository(t *testing.T) {
	for name, tc := range map[string]struct{ key, app string }{
		"wrong key":                             {key: "not-the-key", app: "acme-shop"},
		"an app the key cannot reach (no such)": {key: "the-key", app: "someone-else"},
	} {
		t.Run(name, func(t *testing.T) {
			stub, host := herokuRegistry(t, "the-key", "acme-shop")
			ws, _ := closureWorkspace(t, 2, map[int]string{})
			_, err := PushWorkspace(context.Background(), ws, host, tc.app, PushOptions{
				Insecure: true, Remote: []remote.Option{remote.WithAuth(heroku.RegistryAuth(tc.key))},
				ReuseFrom: map[string]string{"web": "sha256:" + strings.Repeat("ab", 32)}})
			if err == nil {
				t.Fatal("the push succeeded")
			}
			if !IsUnauthorized(err) {
				t.Errorf("not recognised as a credentials failure: %v", err)
			}
			if !strings.Contains(err.Error(), "fetching the previous image") {
				t.Errorf("the refusal of the reuse fetch was not reported as such: %v", err)
			}
			if got := stub.Pushed(tc.app + "/web"); len(got) != 0 {
				t.Errorf("pushed %v", got)
			}
		})
	}
}

// The same holds for the upload itself (kinds that fetch no previous image).
func TestAPushRefusedWithA401IsACredentialsFailure(t *testing.T) {
	_, host := herokuRegistry(t, "the-key", "acme-shop")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Push(context.Background(), map[string]v1.Image{"web": img}, host, "someone-else", remote.WithAuth(heroku.RegistryAuth("the-key")))
	if err == nil || !IsUnauthorized(err) {
		t.Errorf("push to a repository the key cannot reach: %v, want a credentials failure", err)
	}
}

// A first push to an app the key reaches finds no previous image (its
// pinned image is not in the registry) and succeeds.
func TestAFirstPushToAReachableAppFindsNoPreviousImage(t *testing.T) {
	stub, host := herokuRegistry(t, "the-key", "acme-shop")
	ws, _ := closureWorkspace(t, 2, map[int]string{})
	res, err := PushWorkspace(context.Background(), ws, host, "acme-shop", PushOptions{
		Insecure: true, Remote: []remote.Option{remote.WithAuth(heroku.RegistryAuth("the-key"))},
		ReuseFrom: map[string]string{"web": "sha256:" + strings.Repeat("ab", 32)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := stub.Pushed("acme-shop/web"); len(got) != 1 || got[0] != res.Images["web"].ImageID {
		t.Errorf("registry holds %v, the result names %s", got, res.Images["web"].ImageID)
	}
}

func TestIsUnauthorizedIsOnlyAboutCredentials(t *testing.T) {
	if IsUnauthorized(errors.New("UNAUTHORIZED")) {
		t.Error("a plain error with the word in it was taken for a registry refusal")
	}
}
