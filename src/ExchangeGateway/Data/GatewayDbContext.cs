using ExchangeGateway.Auth;
using ExchangeGateway.Recipients;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;

namespace ExchangeGateway.Data;

/// <summary>
/// The one database context: Identity accounts, OpenIddict stores, Data Protection keys and the gateway's own tables.
/// Handlers use it directly; set-based changes go through ExecuteUpdate/ExecuteDelete or SQL.
/// </summary>
public sealed class GatewayDbContext(DbContextOptions<GatewayDbContext> options)
    : IdentityDbContext<GatewayUser, IdentityRole, string>(options), IDataProtectionKeyContext
{
    public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();
    public DbSet<SigningKey> SigningKeys => Set<SigningKey>();
    public DbSet<Recipient> Recipients => Set<Recipient>();

    protected override void OnModelCreating(ModelBuilder builder)
    {
        base.OnModelCreating(builder);
        builder.UseOpenIddict();
        // "Forget me" and a password reset find an account's tokens and authorizations by subject alone; OpenIddict's own
        // indexes start with the application, so without these each was a scan of every token issued.
        builder.Entity<OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreToken>().HasIndex(t => t.Subject);
        builder.Entity<OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreAuthorization>().HasIndex(a => a.Subject);
        builder.HasSequence<long>("feed_positions");
        builder.ApplyConfigurationsFromAssembly(typeof(GatewayDbContext).Assembly);
    }
}
