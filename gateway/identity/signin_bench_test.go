package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"testing"

	"gorm.io/gorm"

	"gatewayd/gateway/store/storetest"
)

// BenchmarkPasskeySignIn measures whole passkey sign-ins (begin + finish, in process, software
// authenticator, session and audit row written) on each database, beside its baseline: the bare ECDSA P-256
// verification each sign-in contains. The authenticator's own signing is not timed.
func BenchmarkPasskeySignIn(b *testing.B) {
	dbs := []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", storetest.NewSQLite}, {"postgres", storetest.NewPostgres}}
	for _, d := range dbs {
		b.Run(d.name+"/baseline", func(b *testing.B) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			digest := sha256.Sum256([]byte("authenticatorData || SHA-256(clientDataJSON)"))
			sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
			b.ResetTimer()
			for b.Loop() {
				if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
					b.Fatal("verify")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
		b.Run(d.name+"/gateway", func(b *testing.B) {
			if d.name == "postgres" && os.Getenv(storetest.EnvPostgres) == "" && os.Getenv("CI") != "true" {
				b.Skip("GATEWAY_TEST_POSTGRES not set")
			}
			e := newEnv(b, d.open(b), nil)
			k := newKey(Intake)
			if _, err := e.register(b, Intake, e.invite(b, RoleRequester).Token, k); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				opts, cid, err := e.svc.BeginSignIn(ctx, Intake)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				resp := assertFor(b, k, opts)
				b.StartTimer()
				if _, err := e.svc.FinishSignIn(ctx, Intake, cid, resp, "127.0.0.1"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
