using ExchangeGateway.Audit;
using ExchangeGateway.Cvs;
using ExchangeGateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Tests.Cvs;

/// <summary>
/// The freshness sweep in many small batches, run by its parallel workers: every stale CV goes offline exactly once,
/// every episode that received it gets exactly one obligation (and an episode that received nothing gets none), the
/// feed moves, and the audit log holds one event per CV.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class FreshnessSweepTests(GatewayFixture fixture)
{
    private GatewayFactory Gateway => fixture.Factory;

    [Fact]
    public async Task ManySmallBatchesTakeEveryStaleCvOfflineOnceWithOneObligationPerHolder()
    {
        var operatorToken = (await fixture.Actors.NewOperatorAsync()).Tokens.AccessToken;
        var holder = await Sites.RegisterAsync(Gateway, operatorToken);
        var bystander = await Sites.RegisterAsync(Gateway, operatorToken);
        var holderToken = await fixture.Actors.TokenAsync(holder);
        var marker = "sweep-" + Guid.NewGuid().ToString("N");
        var seekers = new List<Person>();
        for (var i = 0; i < 7; i++)
        {
            var seeker = await Propagation.SeekerWithCvAsync(Gateway, fixture.Actors, $"{marker}-{i}");
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, holder.Id);
            await Sharing.TickAsync(Gateway, seeker.Tokens.AccessToken, bystander.Id);
            await Propagation.ReadAsync(Gateway, holderToken, $"{marker}-{i}");
            seekers.Add(seeker);
        }

        var ids = string.Join(", ", seekers.Select(s => $"'{s.Id}'"));
        var (_, resumeBefore) = await Sharing.ReadFeedAsync(Gateway, holderToken);

        fixture.Time.Advance(TimeSpan.FromDays(91));
        await using (var scope = Gateway.Services.CreateAsyncScope())
        {
            // Batches of two over two workers: four batches for these seven CVs (and whatever else the shared clock made stale).
            var job = ActivatorUtilities.CreateInstance<FreshnessSweepJob>(
                scope.ServiceProvider, Options.Create(new FreshnessOptions { SweepBatchSize = 2 }));
            Assert.True(await job.RunAsync(CancellationToken.None) >= 7);
        }

        var db = fixture.Database;
        Assert.Equal(7L, await db.ScalarAsync<long>($"SELECT count(*) FROM cvs WHERE seeker_id IN ({ids}) AND state = 'Offline'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{holder.Id}' AND cause = 'cv-offline'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(DISTINCT consent_id) FROM erasure_obligations WHERE recipient_id = '{holder.Id}' AND cause = 'cv-offline'"));
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM erasure_obligations WHERE recipient_id = '{bystander.Id}'"));

        // The holder's feed moved: from where it stood, seven withdrawals with the cause.
        holderToken = await fixture.Actors.TokenAsync(holder);
        var (items, _) = await Sharing.ReadFeedAsync(Gateway, holderToken, resumeBefore);
        var withdrawals = items.Where(i => i.GetProperty("kind").GetString() == "withdrawal").ToList();
        Assert.Equal(7, withdrawals.Count);
        Assert.All(withdrawals, w => Assert.Equal("cv-offline", w.GetProperty("cause").GetString()));

        var pseudonyms = Gateway.Services.GetRequiredService<Pseudonyms>();
        var subjects = string.Join(", ", seekers.Select(s => $"'{pseudonyms.Of(s.Id)}'"));
        Assert.Equal(7L, await db.ScalarAsync<long>(
            $"SELECT count(*) FROM audit_events WHERE action = '{AuditActions.CvWentOffline}' AND subject IN ({subjects})"));
    }
}
