package cloud_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"cloud.google.com/go/datastore"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/gaesession/v2/cloud"
	"github.com/icza/session"
	"github.com/redis/go-redis/v9"
	"google.golang.org/appengine/v2"
)

// An app on the Cloud store: one Cloud Datastore client and one Redis
// client per instance, a store per request. CACHE picks the step of the
// move off the bundled services the deployed version is at (README,
// "Moving off the bundled services"): "memcache" for step (a), "transition"
// for (b), "redis" for (c). Its options must match those of the versions
// that serve the same users (KeyPrefix, Codec, DSEntityName).
func ExampleNewStore() {
	ctx := context.Background()
	client, err := datastore.NewClient(ctx, "") // the project from DATASTORE_PROJECT_ID, or DetectProjectID
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")}) // Memorystore's address
	var cache cloud.Cache
	switch os.Getenv("CACHE") {
	case "memcache":
		cache = cloud.Memcache()
	case "transition":
		cache = cloud.Transition(rdb)
	case "redis":
		cache = cloud.Redis(rdb)
	} // else none: every read asks Cloud Datastore
	opts := &cloud.Options{MemcacheStoreOptions: gaesession.MemcacheStoreOptions{DSEntityName: "sess_"}}

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// An App Engine context: the Memcache and transition caches use
		// the bundled Memcache through it.
		store := cloud.NewStore(appengine.NewContext(r), client, cache, opts)
		defer store.Close()
		mgr := session.NewCookieManager(store)
		if sess := mgr.Get(r); sess != nil {
			w.Write([]byte("hello again"))
			return
		}
		mgr.Add(session.NewSession(), w)
	})
	http.HandleFunc("/purge", cloud.PurgeExpiredSessFunc(client, &cloud.PurgeOptions{
		PurgeOptions: gaesession.PurgeOptions{CronOnly: true},
	}))
	appengine.Main()
}
