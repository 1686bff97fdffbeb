using System.Data.Common;
using System.Net;
using ExchangeGateway.Auth;
using ExchangeGateway.Cvs;
using ExchangeGateway.Data;
using ExchangeGateway.Tests.Infrastructure;
using ExchangeGateway.Tests.Pages;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// Promise 4 against a token that outlives its account: after "forget me", the seeker's still-valid access token can
/// neither publish a CV nor share one, so nothing about the person is created again and no site can read it.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class WritesAfterErasureTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnErasedSeekersTokenCanNeitherPublishNorShareAndNothingIsWritten()
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "erased-then-written");
        var site = await Sharing.RecipientIdAsync(fixture.Factory, seeker.Tokens.AccessToken, "Démo Emploi");
        using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await me.DeleteAsync("/api/v1/me")).StatusCode);

        using (var put = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("written-after-erasure")))
        {
            var problem = await put.AssertProblemAsync(HttpStatusCode.Unauthorized);
            Assert.Contains("no longer exists", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        using (var tick = await me.PutAsync($"/api/v1/me/consents/{site}", null))
        {
            await tick.AssertProblemAsync(HttpStatusCode.Unauthorized);
        }

        foreach (var table in new[] { "cvs", "seeker_keys", "consents", "consent_events" })
        {
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM {table} WHERE seeker_id = '{seeker.Id}'"));
        }

        // Reads and "forget me" again answer as the writes do: the token's subject is gone.
        foreach (var request in new Func<Task<HttpResponseMessage>>[] { () => me.DeleteAsync("/api/v1/me"), () => me.GetAsync("/api/v1/me"), () => me.GetAsync("/api/v1/me/export") })
        {
            using var gone = await request();
            await gone.AssertProblemAsync(HttpStatusCode.Unauthorized);
            Assert.Contains("invalid_token", gone.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// A code (a silent renew in another tab) and a refresh requested while "forget me" waits to commit: both wait for the
    /// erasure and are refused, and nothing naming the seeker is left. The code request used to get its code and leave an
    /// authorization and a code (account id and e-mail address inside) for the two weeks before pruning; the refresh
    /// answered 500 on the authorization the erasure had deleted.
    /// </summary>
    [Fact]
    public async Task ACodeOrARefreshRequestedWhileForgetMeCommitsIsRefusedAndLeavesNothing()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        var verifier = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var challenge = Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(verifier)));
        using var toLogin = await browser.GetAsync(fixture.Actors.AuthorizeUrl("openid offline_access email cv:manage", challenge));
        var renew = await Actors.SubmitLoginAsync(browser, toLogin.Headers.Location!, seeker.Email, seeker.Password);

        HttpResponseMessage authorize, refresh;
        await using (var held = await HeldTransaction.BeginAsync(fixture.Database))
        {
            // The erasure stops at the chain lock, after its deletes and before its commit.
            await held.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
            using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var erasure = me.DeleteAsync("/api/v1/me");
            await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 1);
            var authorizing = browser.GetAsync(renew);
            var refreshing = fixture.Actors.RequestRefreshAsync(seeker.Tokens.RefreshToken!);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (await fixture.Database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_locks WHERE locktype IN ('tuple', 'transactionid') AND NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())") < 2)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the code and the refresh never both waited for the account");
                await Task.Delay(20);
            }

            await held.CommitAsync();
            using var forgotten = await erasure;
            Assert.Equal(HttpStatusCode.OK, forgotten.StatusCode);
            (authorize, refresh) = (await authorizing, await refreshing);
        }

        using (authorize)
        {
            var query = System.Web.HttpUtility.ParseQueryString(authorize.Headers.Location!.Query);
            Assert.Equal(("login_required", null), (query["error"], query["code"]));
        }

        using (refresh)
        {
            Assert.Equal(HttpStatusCode.BadRequest, refresh.StatusCode);
            Assert.Equal("invalid_grant", (await refresh.ReadJsonAsync()).GetProperty("error").GetString());
        }

        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, seeker.Id, seeker.Email));
    }

    /// <summary>
    /// A wrong password posted while "forget me" waits to commit gets the page's one answer for any failed sign-in, and
    /// its count dies with the account. It used to wait on the account's key, fail with a 500 that told the account was
    /// being erased, and leave the erased account id in PostgreSQL's log.
    /// </summary>
    [Fact]
    public async Task AWrongPasswordPostedWhileForgetMeCommitsGetsTheUsualAnswerAndLeavesNothing()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        using var browser = fixture.Factory.CreateHttpClient(new CookieContainer());
        HttpResponseMessage answer;
        await using (var held = await HeldTransaction.BeginAsync(fixture.Database))
        {
            await held.ExecuteAsync($"SELECT pg_advisory_xact_lock({Locks.Chain})");
            using var me = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var erasure = me.DeleteAsync("/api/v1/me");
            await HeldTransaction.WaitForChainWaitersAsync(fixture.Database, 1);
            var posting = Actors.PostLoginFormAsync(browser, new Uri("/Account/Login", UriKind.Relative), seeker.Email, "wrong-" + seeker.Password);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (await fixture.Database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_locks WHERE locktype IN ('tuple', 'transactionid') AND NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())") < 1)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the wrong password's count never waited for the account");
                await Task.Delay(20);
            }

            await held.CommitAsync();
            using var forgotten = await erasure;
            Assert.Equal(HttpStatusCode.OK, forgotten.StatusCode);
            answer = await posting;
        }

        using (answer)
        {
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Matches("Adresse e-mail ou mot de passe incorrect|Incorrect e-mail address or password", await answer.Content.ReadAsStringAsync());
        }

        Assert.Empty(await DatabaseScan.FindAsync(fixture.Database, seeker.Id, seeker.Email));
        var serverLog = Environment.GetEnvironmentVariable("EXCHANGEGATEWAY_TEST_PG_LOG");
        Assert.True(serverLog is not null, "EXCHANGEGATEWAY_TEST_PG_LOG must name the test PostgreSQL's log file (scripts/test sets it)");
        await using var stream = new FileStream(serverLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        Assert.DoesNotContain(seeker.Id, await new StreamReader(stream).ReadToEndAsync(), StringComparison.Ordinal);
    }

    /// <summary>
    /// A page session that outlived its account ends at its next page, before any form is shown; a request already past
    /// that check when the erasure commits writes nothing either (the writers check under the seeker lock).
    /// </summary>
    [Fact]
    public async Task APageSessionThatOutlivedItsAccountEndsAtItsNextPage()
    {
        var (session, email, _) = await PageSession.SignUpAsync(fixture.Factory);
        using (session)
        {
            string seekerId;
            await using (var scope = fixture.Factory.Services.CreateAsyncScope())
            {
                seekerId = (await scope.ServiceProvider.GetRequiredService<UserManager<GatewayUser>>().FindByEmailAsync(email))!.Id;
                // Erased from elsewhere (another device, or DELETE /api/v1/me), while this browser still holds its cookie.
                Assert.NotNull(await scope.ServiceProvider.GetRequiredService<SeekerErasure>().EraseAsync(seekerId, CancellationToken.None));
            }

            using var response = await session.Http.GetAsync("/Sharing");
            Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
            Assert.Contains("/Account/Login", response.Headers.Location!.ToString(), StringComparison.Ordinal);
            Assert.Equal(0L, await fixture.Database.ScalarAsync<long>($"SELECT count(*) FROM consents WHERE seeker_id = '{seekerId}'"));
        }
    }

    /// <summary>
    /// A seeker reading their CV on one node while erasing it from another: the read answers from one snapshot (the CV as
    /// it was, or no CV), never a 500 because the key went between reading the row and reading its key.
    /// </summary>
    [Fact]
    public async Task ReadingOnesCvWhileItIsErasedElsewhereAnswersFromOneSnapshot()
    {
        var seeker = await Propagation.SeekerWithCvAsync(fixture.Factory, fixture.Actors, "read-while-erased");
        var pause = new PauseAfterCvRead();
        await using var reader = new GatewayFactory(
            fixture.Database, fixture.Factory.Time, issuer: fixture.Factory.Issuer,
            services: services => services.ConfigureDbContext<GatewayDbContext>(options => options.AddInterceptors(pause)));
        using var onReader = reader.CreateHttpClient().WithToken(seeker.Tokens.AccessToken);
        using var elsewhere = fixture.Client().WithToken(seeker.Tokens.AccessToken);
        Assert.Equal(HttpStatusCode.OK, (await onReader.GetAsync("/api/v1/me/cv")).StatusCode);

        pause.Armed = true;
        var read = onReader.GetAsync("/api/v1/me/cv");
        await pause.Read.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.NoContent, (await elsewhere.DeleteAsync("/api/v1/me/cv")).StatusCode);
        pause.Resume.SetResult();

        using var response = await read.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("read-while-erased", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var after = await onReader.GetAsync("/api/v1/me/cv");
        Assert.Contains("\"state\":\"erased\"", await after.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    /// <summary>Holds the first read of the CV table, once armed, until the test lets it go on.</summary>
    private sealed class PauseAfterCvRead : DbCommandInterceptor
    {
        public volatile bool Armed;

        public TaskCompletionSource Read { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Resume { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async ValueTask<DbDataReader> ReaderExecutedAsync(
            DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken cancellationToken = default)
        {
            if (Armed && command.CommandText.Contains("FROM cvs AS", StringComparison.Ordinal) && Read.TrySetResult())
            {
                await Resume.Task;
            }

            return result;
        }
    }
}
