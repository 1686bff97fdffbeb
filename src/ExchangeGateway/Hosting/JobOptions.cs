using System.ComponentModel.DataAnnotations;
using Hangfire;

namespace ExchangeGateway.Hosting;

/// <summary>Where the background work runs and when (configuration section <c>Jobs</c>).</summary>
public sealed class JobOptions : IValidatableObject
{
    public const string Section = "Jobs";

    /// <summary>The recurring jobs and their cron schedules (UTC), as run unless <see cref="Schedules"/> says otherwise.</summary>
    public static readonly IReadOnlyDictionary<string, string> DefaultSchedules = new Dictionary<string, string>
    {
        ["EventDispatch"] = Cron.Minutely(),
        ["FreshnessSweep"] = "*/10 * * * *",
        // Every ten minutes, off the sweep's minutes: a run mails for at most five, and once an hour left most of a day's
        // reminders at scale (70 000 CVs going offline a day) to the next hour, past the lead they were due at.
        ["Reminders"] = "5-59/10 * * * *",
        ["ConsentExpiry"] = "*/10 * * * *",
        ["OverdueEscalation"] = "*/15 * * * *",
        ["AuditCheckpoint"] = Cron.Hourly(),
        ["TokenPruning"] = Cron.Daily(3),
        ["DataKeyRotation"] = Cron.Daily(4),
        ["ErasedRecordsPurge"] = Cron.Daily(5),
    };

    /// <summary>Whether this node runs a Hangfire server; nodes meant only to serve requests say false.</summary>
    public bool RunServer { get; set; } = true;

    [Range(1, 64)]
    public int Workers { get; set; } = 4;

    /// <summary>Cron overrides by job name (a key of <see cref="DefaultSchedules"/>).</summary>
    public Dictionary<string, string> Schedules { get; set; } = [];

    public string ScheduleOf(string job) => Schedules.GetValueOrDefault(job) ?? DefaultSchedules[job];

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        // A misspelt job name would otherwise leave the job on its default schedule without a word.
        foreach (var name in Schedules.Keys.Where(n => !DefaultSchedules.ContainsKey(n)))
        {
            yield return new ValidationResult(
                $"no recurring job is called '{name}'; the jobs are {string.Join(", ", DefaultSchedules.Keys)}", [nameof(Schedules)]);
        }

        foreach (var (name, cron) in Schedules.Where(s => DefaultSchedules.ContainsKey(s.Key)))
        {
            if (string.IsNullOrWhiteSpace(cron))
            {
                yield return new ValidationResult($"the schedule of '{name}' is empty", [nameof(Schedules)]);
            }
            else if (ParseCron(cron) is null)
            {
                // Here, while the services are set up, not when the jobs are registered: by then a node has installed
                // Hangfire's schema and migrated the database other nodes still serve from, and a command never registers.
                yield return new ValidationResult($"'{cron}' is not a cron expression (five fields, or six with seconds first)", [$"{nameof(Schedules)}:{name}"]);
            }
        }
    }

    /// <summary>
    /// A schedule read as Hangfire 1.8 reads it: five fields, or six with the seconds first; null when it cannot be read
    /// (macros such as @hourly, which Cronos takes and Hangfire refuses, included).
    /// </summary>
    public static Cronos.CronExpression? ParseCron(string cron)
    {
        var fields = cron.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Length;
        return fields is 5 or 6
            && Cronos.CronExpression.TryParse(cron.Trim(), fields == 6 ? Cronos.CronFormat.IncludeSeconds : Cronos.CronFormat.Standard, out var expression)
            ? expression
            : null;
    }
}
