using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace ExchangeGateway.Bench;

/// <summary>
/// Deterministic, varied JSON Resume documents of about 8 KB (the size of a real one with a few jobs): every seeker gets
/// different names, places, texts and dates, so compression and caches see realistic data, not one repeated document.
/// </summary>
internal static class Resumes
{
    public const int TargetBytes = 8 * 1024;

    private static readonly string[] FirstNames =
    [
        "Camille", "Léa", "Hugo", "Nathan", "Chloé", "Lucas", "Manon", "Louis", "Inès", "Jules", "Sarah", "Adam", "Emma", "Gabriel",
        "Jade", "Raphaël", "Louise", "Arthur", "Alice", "Mohamed", "Lina", "Théo", "Zoé", "Noah", "Anna", "Paul", "Clara", "Yanis",
    ];

    private static readonly string[] LastNames =
    [
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent",
        "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier",
    ];

    private static readonly string[] Cities =
    [
        "Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Strasbourg", "Montpellier", "Bordeaux", "Lille", "Rennes", "Reims",
        "Grenoble", "Dijon", "Angers", "Nîmes", "Brest", "Tours", "Limoges", "Amiens", "Metz",
    ];

    private static readonly string[] Positions =
    [
        "Software Engineer", "Accountant", "Nurse", "Warehouse Supervisor", "Sales Representative", "Project Manager",
        "Electrician", "Data Analyst", "Chef de cuisine", "Logistics Coordinator", "HR Officer", "Customer Advisor",
        "Mechanical Technician", "Graphic Designer", "Teacher", "Site Manager", "Pharmacist", "Plumber", "Web Developer",
    ];

    private static readonly string[] Companies =
    [
        "Acme Industries", "Boulangerie Dupont", "Nord Logistique", "Clinique du Parc", "Atelier Moderne", "Groupe Horizon",
        "Solutions Numériques", "Transports Rapides", "Banque Régionale", "Hôtel des Arts", "Énergie Verte", "BTP Construction",
    ];

    private static readonly string[] Words =
    [
        "managed", "team", "customers", "delivered", "projects", "budget", "quality", "improved", "process", "training",
        "planning", "service", "results", "developed", "new", "tools", "reporting", "safety", "stock", "schedules", "coordinated",
        "suppliers", "analysis", "sales", "growth", "support", "operations", "maintenance", "standards", "clients", "digital",
        "efficiency", "launched", "organised", "daily", "weekly", "regional", "national", "partners", "audit", "compliance",
        "production", "design", "testing", "documentation", "migration", "negotiated", "contracts", "recruited", "mentored",
    ];

    private static readonly string[] Skills =
    [
        "Communication", "Excel", "SQL", "C#", "Project management", "Customer service", "Forklift licence", "First aid",
        "Accounting", "Negotiation", "Python", "Team leadership", "Scheduling", "Quality control", "AutoCAD", "Cooking",
    ];

    /// <summary>The UTF-8 document of seeker <paramref name="index"/>, lastModified set as the gateway does.</summary>
    public static byte[] Create(long index, DateTimeOffset lastModified)
    {
        var random = new Random(unchecked((int)(index * 2654435761L)));
        var buffer = new ArrayBufferWriter<byte>(TargetBytes + 2048);
        using (var json = new Utf8JsonWriter(buffer))
        {
            var first = Pick(random, FirstNames);
            var last = Pick(random, LastNames);
            var city = Pick(random, Cities);
            json.WriteStartObject();
            json.WriteString("$schema", "https://raw.githubusercontent.com/jsonresume/resume-schema/v1.0.0/schema.json");
            json.WriteStartObject("basics");
            json.WriteString("name", $"{first} {last}");
            json.WriteString("label", Pick(random, Positions));
            json.WriteString("email", $"{first.ToLowerInvariant()}.{last.ToLowerInvariant()}{index}@example.org");
            json.WriteString("phone", $"+33 6 {random.Next(10, 99)} {random.Next(10, 99)} {random.Next(10, 99)} {random.Next(10, 99)}");
            json.WriteString("url", $"https://{last.ToLowerInvariant()}{index}.example.org");
            json.WriteString("summary", Sentence(random, 60));
            json.WriteStartObject("location");
            json.WriteString("address", $"{random.Next(1, 200)} rue {Pick(random, LastNames)}");
            json.WriteString("postalCode", random.Next(10000, 95999).ToString(CultureInfo.InvariantCulture));
            json.WriteString("city", city);
            json.WriteString("countryCode", "FR");
            json.WriteString("region", "France");
            json.WriteEndObject();
            json.WriteStartArray("profiles");
            json.WriteStartObject();
            json.WriteString("network", "LinkedIn");
            json.WriteString("username", $"{first}{last}{index}".ToLowerInvariant());
            json.WriteString("url", $"https://linkedin.example/in/{first}{last}{index}".ToLowerInvariant());
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();

            // Jobs until the document reaches its size: like real CVs, the work history is most of it.
            json.WriteStartArray("work");
            var year = 2024;
            while (buffer.WrittenCount + json.BytesPending < TargetBytes - 2600)
            {
                var start = year - random.Next(1, 4);
                json.WriteStartObject();
                json.WriteString("name", Pick(random, Companies));
                json.WriteString("position", Pick(random, Positions));
                json.WriteString("location", Pick(random, Cities));
                json.WriteString("url", "https://company.example.org");
                json.WriteString("startDate", $"{start}-{random.Next(1, 13):00}-01");
                json.WriteString("endDate", $"{year}-{random.Next(1, 13):00}-01");
                json.WriteString("summary", Sentence(random, 45));
                json.WriteStartArray("highlights");
                for (var h = 0; h < 3; h++)
                {
                    json.WriteStringValue(Sentence(random, 12));
                }

                json.WriteEndArray();
                json.WriteEndObject();
                json.Flush();
                year = start;
            }

            json.WriteEndArray();
            json.WriteStartArray("education");
            for (var e = 0; e < 2; e++)
            {
                json.WriteStartObject();
                json.WriteString("institution", $"Université de {Pick(random, Cities)}");
                json.WriteString("url", "https://univ.example.org");
                json.WriteString("area", Pick(random, Skills));
                json.WriteString("studyType", e == 0 ? "Master" : "Licence");
                json.WriteString("startDate", $"{year - 5 + (e * 2)}-09-01");
                json.WriteString("endDate", $"{year - 3 + (e * 2)}-06-30");
                json.WriteString("score", $"{random.Next(10, 19)}/20");
                json.WriteStartArray("courses");
                json.WriteStringValue(Sentence(random, 4));
                json.WriteStringValue(Sentence(random, 4));
                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("skills");
            for (var s = 0; s < 5; s++)
            {
                json.WriteStartObject();
                json.WriteString("name", Pick(random, Skills));
                json.WriteString("level", Pick(random, ["Beginner", "Intermediate", "Advanced", "Master"]));
                json.WriteStartArray("keywords");
                for (var k = 0; k < 4; k++)
                {
                    json.WriteStringValue(Pick(random, Words));
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("languages");
            json.WriteStartObject();
            json.WriteString("language", "French");
            json.WriteString("fluency", "Native speaker");
            json.WriteEndObject();
            json.WriteStartObject();
            json.WriteString("language", Pick(random, ["English", "Spanish", "German", "Arabic", "Italian"]));
            json.WriteString("fluency", Pick(random, ["Fluent", "Professional", "Intermediate"]));
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartArray("interests");
            json.WriteStartObject();
            json.WriteString("name", Pick(random, ["Football", "Music", "Hiking", "Photography", "Cooking", "Reading"]));
            json.WriteStartArray("keywords");
            json.WriteStringValue(Pick(random, Words));
            json.WriteStringValue(Pick(random, Words));
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartArray("references");
            json.WriteStartObject();
            json.WriteString("name", $"{Pick(random, FirstNames)} {Pick(random, LastNames)}");
            json.WriteString("reference", Sentence(random, 30));
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartObject("meta");
            json.WriteString("lastModified", lastModified.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static string Pick(Random random, string[] values) => values[random.Next(values.Length)];

    private static string Sentence(Random random, int words)
    {
        var parts = new string[words];
        for (var i = 0; i < words; i++)
        {
            parts[i] = Pick(random, Words);
        }

        parts[0] = char.ToUpperInvariant(parts[0][0]) + parts[0][1..];
        return string.Join(' ', parts) + ".";
    }
}
