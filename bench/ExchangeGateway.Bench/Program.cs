using ExchangeGateway.Bench;

// The benchmark driver's commands; scripts/bench calls them in order (see its header for the whole run).
return args switch
{
    ["seed", .. var rest] => await Seeder.RunAsync(Options.Parse(rest)),
    ["receiver", .. var rest] => await Receiver.RunAsync(Options.Parse(rest)),
    ["post", .. var rest] => await Poster.RunAsync(Options.Parse(rest)),
    ["raw-sweep", .. var rest] => await RawSweep.RunAsync(Options.Parse(rest)),
    ["trigger", .. var rest] => await Trigger.RunAsync(Options.Parse(rest)),
    ["report", .. var rest] => Report.Run(Options.Parse(rest)),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: ExchangeGateway.Bench <command> [--option value ...]
          seed       --conn C --cvs N --recipients R --shares S --audit-events A --out DIR
          receiver   --port P --sample FILE --max-seconds S      minimal push receiver answering 202
          post       --url U --body FILE --concurrency C --seconds S [--warmup S]   plain HttpClient baseline, after a warm-up
          raw-sweep  --conn C --max-age-days D                   one UPDATE ... RETURNING, rolled back
          trigger    --conn C --job NAME                         run a recurring job in the running gateway, print its duration
          report     --measurements FILE --out-dir DIR --title T
        """);
    return 64;
}
