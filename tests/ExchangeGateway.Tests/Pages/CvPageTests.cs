using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ExchangeGateway.Tests.Infrastructure;

namespace ExchangeGateway.Tests.Pages;

[Collection(GatewayCollection.Name)]
public sealed partial class CvPageTests(GatewayFixture fixture)
{
    [Fact]
    public async Task AnImportedJsonResumeKeepsWhatTheFormDoesNotShowWhenTheFormIsSaved()
    {
        var (seeker, session) = await SignedInSeekerAsync();
        using (session)
        {
            var marker = "import-" + Guid.NewGuid().ToString("N");
            using (var imported = await ImportAsync(session, Encoding.UTF8.GetBytes(Sharing.Resume(marker).ToJsonString())))
            {
                Assert.Equal("/Cv?done=imported", imported.Headers.Location!.OriginalString);
            }

            // The form as the browser sends it, with one change: the name.
            var page = await session.GetPageAsync("/Cv");
            var fields = FormFields(page, "Save");
            Assert.Contains(fields, f => f.Key == "Form.Work[0].Position" && f.Value == "CEO/President");
            fields.RemoveAll(f => f.Key == "Form.Name");
            fields.Add(new("Form.Name", "Renamed Seeker"));
            using (var saved = await session.Http.PostAsync("/Cv?handler=Save", new FormUrlEncodedContent(fields)))
            {
                Assert.Equal("/Cv?done=saved", saved.Headers.Location!.OriginalString);
            }

            using var api = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var cv = JsonNode.Parse(await api.GetStringAsync("/api/v1/me/cv"))!;
            Assert.Equal(2, cv["version"]!.GetValue<int>());
            var document = cv["document"]!;
            Assert.Equal("Renamed Seeker", document["basics"]!["name"]!.GetValue<string>());
            Assert.Equal("Summary " + marker, document["basics"]!["summary"]!.GetValue<string>());
            Assert.Equal(3, document["work"]![0]!["highlights"]!.AsArray().Count);
            Assert.Equal("Miss Direction", document["projects"]![0]!["name"]!.GetValue<string>());
            Assert.Equal(2, document["basics"]!["profiles"]!.AsArray().Count);
            Assert.Equal(["HTML", "CSS", "Javascript"], document["skills"]![0]!["keywords"]!.AsArray().Select(k => k!.GetValue<string>()));
        }
    }

    /// <summary>
    /// What an imported file brought beyond the form's fields (a street address, a photo, references...) is shared like the
    /// rest, so My CV lists it, and each part can be taken out: gone from the stored CV, hence from what sites read.
    /// Nothing the form shows can be removed that way, whatever a crafted post names.
    /// </summary>
    [Fact]
    public async Task WhatAnImportBroughtBeyondTheFormIsListedAndCanBeRemoved()
    {
        var (seeker, session) = await SignedInSeekerAsync();
        using (session)
        {
            var marker = "parts-" + Guid.NewGuid().ToString("N");
            using (await ImportAsync(session, Encoding.UTF8.GetBytes(Sharing.Resume(marker).ToJsonString())))
            {
            }

            var page = WebUtility.HtmlDecode(await session.GetPageAsync("/Cv"));
            Assert.Contains("<legend>Autres parties de votre CV</legend>", page, StringComparison.Ordinal);
            foreach (var (path, label) in new[]
            {
                ("/references", "Retirer : Références (1 élément)"), ("/projects", "Retirer : Projets (1 élément)"),
                ("/basics/image", "Retirer : Photo</label>"), ("/basics/profiles", "Retirer : Profils en ligne (2 éléments)"),
                ("/basics/location/address", "Retirer : Adresse (2712 Broadway St)"),
            })
            {
                Assert.Contains($"value=\"{path}\"", page, StringComparison.Ordinal);
                Assert.Contains(label, page, StringComparison.Ordinal);
            }

            Assert.DoesNotContain("value=\"/basics/location/city\"", page, StringComparison.Ordinal);
            // The file's own metadata (which the gateway writes itself) is not the seeker's to manage.
            Assert.DoesNotContain("value=\"/meta\"", page, StringComparison.Ordinal);
            var fields = FormFields(page, "Save");
            fields.AddRange(new KeyValuePair<string, string>[]
            {
                new("Form.RemoveParts", "/references"), new("Form.RemoveParts", "/basics/location/address"), new("Form.RemoveParts", "/basics/image"),
                // Not offered: the form's own fields stay.
                new("Form.RemoveParts", "/basics/name"), new("Form.RemoveParts", "/work"), new("Form.RemoveParts", "/basics/location/city"),
            });
            using (var saved = await session.Http.PostAsync("/Cv?handler=Save", new FormUrlEncodedContent(fields)))
            {
                Assert.Equal("/Cv?done=saved", saved.Headers.Location!.OriginalString);
            }

            using var api = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var document = JsonNode.Parse(await api.GetStringAsync("/api/v1/me/cv"))!["document"]!.AsObject();
            Assert.False(document.ContainsKey("references"));
            Assert.False(document["basics"]!.AsObject().ContainsKey("image"));
            Assert.False(document["basics"]!["location"]!.AsObject().ContainsKey("address"));
            Assert.Equal("San Francisco", document["basics"]!["location"]!["city"]!.GetValue<string>());
            Assert.Equal("CA 94115", document["basics"]!["location"]!["postalCode"]!.GetValue<string>());
            Assert.True(document.ContainsKey("projects"));
            Assert.True(document.ContainsKey("work"));
            Assert.False(string.IsNullOrEmpty(document["basics"]!["name"]!.GetValue<string>()));
            Assert.DoesNotContain("2712 Broadway St", document.ToJsonString(), StringComparison.Ordinal);
        }
    }

    /// <summary>A CV typed into the form alone has no other parts to list (the gateway's own metadata is not one).</summary>
    [Fact]
    public async Task ACvMadeWithTheFormAloneListsNoOtherParts()
    {
        var (_, session) = await SignedInSeekerAsync();
        using (session)
        {
            var fields = FormFields(await session.GetPageAsync("/Cv"), "Save");
            fields.RemoveAll(f => f.Key == "Form.Name");
            fields.Add(new("Form.Name", "Form Only"));
            using (var saved = await session.Http.PostAsync("/Cv?handler=Save", new FormUrlEncodedContent(fields)))
            {
                Assert.Equal("/Cv?done=saved", saved.Headers.Location!.OriginalString);
            }

            Assert.DoesNotContain("Autres parties de votre CV", WebUtility.HtmlDecode(await session.GetPageAsync("/Cv")), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AFileThatIsNotAJsonResumeIsExplainedNextToTheFileField()
    {
        var (_, session) = await SignedInSeekerAsync();
        using (session)
        {
            using var response = await ImportAsync(session, "{\"basics\":{\"email\":\"not an address\"}}"u8.ToArray());
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var html = await response.Content.ReadAsStringAsync();
            Assert.Matches("id=\"Upload-error\"[^>]*>[^<]*/basics/email", html);
            Assert.Matches("<input[^>]*type=\"file\"[^>]*aria-invalid=\"true\"", html);
            Assert.Contains("<title>Erreur : Mon CV", html, StringComparison.Ordinal);
            // In the page's language, not the validator's English.
            Assert.Contains("cette valeur ne respecte pas le format JSON Resume", System.Net.WebUtility.HtmlDecode(html), StringComparison.Ordinal);
            Assert.DoesNotContain("does not match", html, StringComparison.OrdinalIgnoreCase);

            using var notJson = await ImportAsync(session, Encoding.Unicode.GetBytes("{\"basics\":{}}"));
            var text = System.Net.WebUtility.HtmlDecode(await notJson.Content.ReadAsStringAsync());
            Assert.Contains("Ce fichier n’est pas un CV au format JSON Resume", text, StringComparison.Ordinal);
            Assert.DoesNotContain("UTF-8.\"", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task SkillKeywordsAreOnePerLineSoAKeywordWithACommaStaysOneKeyword()
    {
        var (seeker, session) = await SignedInSeekerAsync();
        using (session)
        {
            var resume = Sharing.Resume("keywords");
            resume["skills"] = new JsonArray(
                new JsonObject { ["name"] = "Office", ["keywords"] = new JsonArray("Office (Word, Excel)", "Outlook") },
                new JsonObject { ["name"] = "Writing", ["keywords"] = new JsonArray("Reports") });
            using (await ImportAsync(session, Encoding.UTF8.GetBytes(resume.ToJsonString())))
            {
            }

            // The browser sends textareas with CRLF line breaks; the first row is sent back untouched, the second edited.
            var fields = FormFields(await session.GetPageAsync("/Cv"), "Save");
            Assert.Contains(fields, f => f.Key == "Form.Skills[0].Keywords" && f.Value == "Office (Word, Excel)\nOutlook");
            fields = [.. fields.Select(f => f.Key switch
            {
                "Form.Skills[0].Keywords" => new KeyValuePair<string, string>(f.Key, f.Value.Replace("\n", "\r\n", StringComparison.Ordinal)),
                "Form.Skills[1].Keywords" => new(f.Key, "Reports, minutes\r\n\r\n  Speeches  \r\n"),
                _ => f,
            })];
            using (var saved = await session.Http.PostAsync("/Cv?handler=Save", new FormUrlEncodedContent(fields)))
            {
                Assert.Equal("/Cv?done=saved", saved.Headers.Location!.OriginalString);
            }

            using var api = fixture.Client().WithToken(seeker.Tokens.AccessToken);
            var skills = JsonNode.Parse(await api.GetStringAsync("/api/v1/me/cv"))!["document"]!["skills"]!;
            Assert.Equal(["Office (Word, Excel)", "Outlook"], skills[0]!["keywords"]!.AsArray().Select(k => k!.GetValue<string>()));
            Assert.Equal(["Reports, minutes", "Speeches"], skills[1]!["keywords"]!.AsArray().Select(k => k!.GetValue<string>()));
        }
    }

    [Fact]
    public async Task SavingOverAChangeMadeElsewhereShowsTheLatestVersionInsteadOfOverwritingIt()
    {
        var (seeker, session) = await SignedInSeekerAsync();
        using (session)
        {
            using (await ImportAsync(session, Encoding.UTF8.GetBytes(Sharing.Resume("first").ToJsonString())))
            {
            }

            var fields = FormFields(await session.GetPageAsync("/Cv"), "Save");
            using (var elsewhere = await Sharing.PutCvAsync(fixture.Factory, seeker.Tokens.AccessToken, Sharing.Resume("from-the-api")))
            {
                Assert.Equal(HttpStatusCode.OK, elsewhere.StatusCode);
            }

            using var response = await session.Http.PostAsync("/Cv?handler=Save", new FormUrlEncodedContent(fields));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var html = await response.Content.ReadAsStringAsync();
            Assert.Contains("role=\"alert\"", html, StringComparison.Ordinal);
            Assert.Contains("Summary from-the-api", html, StringComparison.Ordinal);
        }
    }

    private async Task<(Person Seeker, PageSession Session)> SignedInSeekerAsync()
    {
        var seeker = await fixture.Actors.NewSeekerAsync();
        var session = new PageSession(fixture.Factory);
        await Actors.SubmitLoginAsync(session.Http, new Uri("/Account/Login?ReturnUrl=%2FCv", UriKind.Relative), seeker.Email, seeker.Password);
        return (seeker, session);
    }

    /// <summary>
    /// A file within the limit as sent but over it as stored (the server adds meta.lastModified) is refused as too large,
    /// in those words: it used to be told it was not a JSON Resume at all.
    /// </summary>
    [Fact]
    public async Task ACvOverTheLimitAsStoredIsSaidToBeTooLarge()
    {
        var (_, session) = await SignedInSeekerAsync();
        using (session)
        {
            const string Head = "{\"basics\":{\"summary\":\"", Tail = "\"}}";
            var file = Encoding.UTF8.GetBytes(Head + new string('x', (256 * 1024) - Head.Length - Tail.Length) + Tail);
            using var imported = await ImportAsync(session, file);
            var page = System.Net.WebUtility.HtmlDecode(await imported.Content.ReadAsStringAsync());
            Assert.Contains("Votre CV dépasse la taille permise", page, StringComparison.Ordinal);
            Assert.DoesNotContain("n’est pas un CV au format JSON Resume", page, StringComparison.Ordinal);
        }
    }

    private static async Task<HttpResponseMessage> ImportAsync(PageSession session, byte[] file)
    {
        var page = await session.GetPageAsync("/Cv");
        var form = new MultipartFormDataContent();
        var content = new ByteArrayContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        form.Add(content, "Upload", "resume.json");
        form.Add(new StringContent(PageSession.AntiforgeryToken(page)), "__RequestVerificationToken");
        return await session.Http.PostAsync("/Cv?handler=Import", form);
    }

    /// <summary>The fields a browser would submit from the form whose handler is given: inputs, textareas, ticked boxes only.</summary>
    private static List<KeyValuePair<string, string>> FormFields(string html, string handler)
    {
        var form = FormElement().Matches(html).Select(m => m.Value).Single(f => f.Contains($"handler={handler}\"", StringComparison.Ordinal));
        var fields = new List<KeyValuePair<string, string>>();
        foreach (Match input in InputElement().Matches(form))
        {
            var tag = input.Value;
            var name = Attribute(tag, "name");
            var type = Attribute(tag, "type") ?? "text";
            if (name is null || type is "submit" or "file" || (type == "checkbox" && !tag.Contains("checked", StringComparison.Ordinal)))
            {
                continue;
            }

            fields.Add(new(WebUtility.HtmlDecode(name), WebUtility.HtmlDecode(Attribute(tag, "value") ?? "")));
        }

        foreach (Match area in TextareaElement().Matches(form))
        {
            fields.Add(new(WebUtility.HtmlDecode(area.Groups[1].Value), WebUtility.HtmlDecode(area.Groups[2].Value.TrimStart('\r', '\n'))));
        }

        return fields;

        static string? Attribute(string tag, string name) =>
            Regex.Match(tag, $"\\s{name}=\"([^\"]*)\"") is { Success: true } m ? m.Groups[1].Value : null;
    }

    [GeneratedRegex("<form[^>]*>.*?</form>", RegexOptions.Singleline)]
    private static partial Regex FormElement();

    [GeneratedRegex("<input[^>]*>")]
    private static partial Regex InputElement();

    [GeneratedRegex("<textarea[^>]*\\sname=\"([^\"]+)\"[^>]*>(.*?)</textarea>", RegexOptions.Singleline)]
    private static partial Regex TextareaElement();
}
