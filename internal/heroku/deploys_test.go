package heroku

import "testing"

func TestDeploysReadsHerokusDescriptionOfAContainerRelease(t *testing.T) {
	web := "sha256:7e6cd5c5e5b7b65ea6e5793efcc2c62937b19df3c00e4eb90596c5f4b9f7ca65"
	worker := "sha256:18ffddd81c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829"
	cases := []struct {
		desc   string
		images map[string]string
		want   bool
	}{
		{"Deployed web (7e6cd5c5e5b7)", map[string]string{"web": web}, true},
		{"Deployed web (7e6cd5c5e5b7), worker (18ffddd81c1e)", map[string]string{"web": web, "worker": worker}, true},
		{"Deployed web (7e6cd5c5e5b7)", map[string]string{"web": web, "worker": worker}, false},
		{"Deployed web (18ffddd81c1e)", map[string]string{"web": web}, false},
		{"Deployed worker (7e6cd5c5e5b7)", map[string]string{"web": web}, false},
		{"Set FOO config vars", map[string]string{"web": web}, false},
		{"Rollback to v41", map[string]string{"web": web}, false},
		{"Deployed web (7e6c)", map[string]string{"web": web}, false},
	}
	for _, tc := range cases {
		if got := Deploys(&Release{Description: tc.desc}, tc.images); got != tc.want {
			t.Errorf("Deploys(%q, %v) = %v, want %v", tc.desc, tc.images, got, tc.want)
		}
	}
}

func TestARepeatedReleaseWhileTheFirstIsPendingSendsNothing(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	images := map[string]string{"web": e.push(t, "shop/web"), "release": e.push(t, "shop/release")}
	first, outcome, err := e.client.ReleaseImages(t.Context(), "shop", images)
	if err != nil || outcome != Released || first.Status != ReleasePending {
		t.Fatalf("first release: %+v %v %v", first, outcome, err)
	}
	e.stub.ResetCalls()
	again, outcome, err := e.client.ReleaseImages(t.Context(), "shop", images)
	if err != nil || outcome != AlreadyDeployed || again.ID != first.ID {
		t.Fatalf("repeated release: %+v %v %v; want the pending %s back", again, outcome, err, first.ID)
	}
	for _, c := range e.apiCalls() {
		if c.IsWrite() {
			t.Errorf("the repeated release wrote: %s %s", c.Method, c.Path)
		}
	}
}
