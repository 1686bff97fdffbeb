using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace ExchangeGateway.Hosting;

/// <summary>
/// Options that decide what gets registered (whether a node runs a job server, whether CORS is on) are needed before the
/// container exists, so they cannot wait for <c>ValidateOnStart</c>: they are bound and validated here, with the same
/// data annotations and the same kind of error, naming the setting, and registered as <see cref="IOptions{T}"/> for the rest.
/// </summary>
public static class StartupOptions
{
    public static T Bind<T>(IServiceCollection services, IConfiguration configuration, string section)
        where T : class, new()
    {
        var options = configuration.GetSection(section).Get<T>() ?? new T();
        var failures = new List<ValidationResult>();
        if (!Validator.TryValidateObject(options, new ValidationContext(options), failures, validateAllProperties: true))
        {
            throw new OptionsValidationException(section, typeof(T),
                failures.Select(f => $"{section}:{string.Join(", ", f.MemberNames)}: {f.ErrorMessage}"));
        }

        services.AddSingleton(Options.Create(options));
        return options;
    }
}
