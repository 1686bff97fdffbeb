using System.Globalization;
using ExchangeGateway.Auth;
using ExchangeGateway.Consents;
using ExchangeGateway.Events;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace ExchangeGateway.Hosting;

/// <summary>Swagger UI with OAuth2 wired to our own authorization server (client credentials, and code + PKCE for people).</summary>
public static class OpenApi
{
    public const string DocumentName = "v1";
    private const string SchemeId = "oauth2";

    public static IServiceCollection AddGatewayOpenApi(this IServiceCollection services)
    {
        services.AddEndpointsApiExplorer();
        // Schemas from the options the API serializes with (minimal APIs' JSON options, not MVC's): enums as the kebab-case
        // strings the API sends and accepts, not as numbers.
        services.AddTransient<ISerializerDataContractResolver>(sp => new JsonSerializerDataContractResolver(
            sp.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions));
        services.AddSwaggerGen(options =>
        {
            options.OperationFilter<ProblemResponses>();
            options.OperationFilter<PageParameters>();
            options.OperationFilter<VersionHeaders>();
            options.SchemaFilter<ConstructorParameters>();
            options.SchemaFilter<UrlLengths>();
            options.SchemaFilter<EventDocuments>();
            options.SchemaFilter<NonNullableMembers>();
            options.DocumentFilter<EventDocuments>();
            options.SwaggerDoc(DocumentName, new OpenApiInfo
            {
                Title = "ExchangeGateway API",
                Version = "v1",
                Description = "Consent and exchange gateway for job seekers' CVs. Errors are RFC 9457 problem details.",
                License = new OpenApiLicense { Name = "Apache-2.0", Url = new Uri("https://www.apache.org/licenses/LICENSE-2.0") },
            });
            // A CV document is any JSON Resume object, written through as it was stored: the same open schema as a JsonElement.
            options.MapType<Exchange.CvDocument>(() => new OpenApiSchema());
            // Each flow lists the scopes it can actually obtain: sites and auditors' tools use their own credentials, people
            // sign in (a person is granted only their role's scope, whatever the client asks for).
            var machineScopes = new Dictionary<string, string>
            {
                [ApiScopes.CvRead] = "Recipient site: read the CVs shared with it, receive and confirm its events",
                [ApiScopes.AuditRead] = "Auditors' client: read and verify the audit log",
            };
            var personScopes = new Dictionary<string, string>
            {
                [ApiScopes.CvManage] = "Job seeker: manage my CV and my consents",
                [ApiScopes.AuditRead] = "Auditor: read and verify the audit log",
                [ApiScopes.RecipientsAdmin] = "Operator: manage recipient sites",
            };
            // Relative URLs resolve against the server the document is served from, so the document is the same everywhere.
            options.AddSecurityDefinition(SchemeId, new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.OAuth2,
                Flows = new OpenApiOAuthFlows
                {
                    ClientCredentials = new OpenApiOAuthFlow { TokenUrl = new Uri("/connect/token", UriKind.Relative), Scopes = machineScopes },
                    AuthorizationCode = new OpenApiOAuthFlow
                    {
                        AuthorizationUrl = new Uri("/connect/authorize", UriKind.Relative),
                        TokenUrl = new Uri("/connect/token", UriKind.Relative),
                        Scopes = personScopes,
                    },
                },
            });
            options.OperationFilter<ScopeRequirements>();
        });
        return services;
    }

    /// <summary>
    /// The problem answers every API operation can give, declared once instead of on each endpoint: 401, 403, 429 and 503
    /// everywhere, 400 where the caller sends something (query, route, body), 404 where a path names a resource, 415 where
    /// it sends a JSON body; with the headers that come with them (WWW-Authenticate, Retry-After, Location on a 201).
    /// Endpoint-specific ones (409, 412, 413, 422) are declared on their endpoints. Only a 400 carries <c>errors</c>.
    /// </summary>
    private sealed class ProblemResponses : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            var path = context.ApiDescription.RelativePath ?? "";
            if (!path.StartsWith("api/", StringComparison.Ordinal))
            {
                return;
            }

            var validation = context.SchemaGenerator.GenerateSchema(typeof(Microsoft.AspNetCore.Http.HttpValidationProblemDetails), context.SchemaRepository);
            var problem = context.SchemaGenerator.GenerateSchema(typeof(Microsoft.AspNetCore.Mvc.ProblemDetails), context.SchemaRepository);
            operation.Responses ??= new OpenApiResponses();
            void Add(int status, string description, IOpenApiSchema schema, params (string Name, string Description, JsonSchemaType Type)[] headers)
            {
                var response = new OpenApiResponse
                {
                    Description = description,
                    Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = new() { Schema = schema } },
                };
                if (operation.Responses.TryAdd(status.ToString(CultureInfo.InvariantCulture), response))
                {
                    AddHeaders(response, headers);
                }
            }

            if (context.ApiDescription.ParameterDescriptions.Count > 0)
            {
                Add(StatusCodes.Status400BadRequest, "The request is invalid; the problem names each faulty field.", validation);
            }

            if (context.ApiDescription.ParameterDescriptions.Any(p => p.Source == Microsoft.AspNetCore.Mvc.ModelBinding.BindingSource.Body))
            {
                Add(StatusCodes.Status415UnsupportedMediaType, "The body is not sent as application/json.", problem);
            }

            if (path.Contains('{', StringComparison.Ordinal))
            {
                Add(StatusCodes.Status404NotFound, "No such resource, or none of yours (the answer is the same).", problem);
            }

            // An operation open to all (an erasure request's status) refuses no token.
            if (!context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<Microsoft.AspNetCore.Authorization.IAllowAnonymous>().Any())
            {
                Add(StatusCodes.Status401Unauthorized, "No valid access token.", problem,
                    ("WWW-Authenticate", "Bearer, with error=\"invalid_token\" when a token was sent (RFC 6750 §3).", JsonSchemaType.String));
                Add(StatusCodes.Status403Forbidden, ForbiddenBecause(path), problem,
                    ("WWW-Authenticate", "Bearer error=\"insufficient_scope\" and the scope needed, when that is why (RFC 6750 §3.1).", JsonSchemaType.String));
            }
            Add(StatusCodes.Status429TooManyRequests, "Too many requests: retry after the seconds in Retry-After.", problem,
                ("Retry-After", "Seconds to wait before the next request.", JsonSchemaType.Integer));
            Add(StatusCodes.Status503ServiceUnavailable, "The database could not answer just now: retry after the seconds in Retry-After.", problem,
                ("Retry-After", "Seconds to wait before retrying.", JsonSchemaType.Integer));
            if (operation.Responses.TryGetValue("201", out var created) && created is OpenApiResponse createdResponse)
            {
                AddHeaders(createdResponse, ("Location", "Where the created resource is read.", JsonSchemaType.String));
            }

            // Stated on every answer of a request that drew on the allowance (draft-ietf-httpapi-ratelimit-headers); declared
            // once among the components, referred to from each answer.
            var components = context.Document.Components ??= new OpenApiComponents();
            components.Headers ??= new Dictionary<string, IOpenApiHeader>();
            foreach (var (name, description) in RateLimitHeaders)
            {
                components.Headers.TryAdd(name, new OpenApiHeader { Description = description, Schema = new OpenApiSchema { Type = JsonSchemaType.String } });
            }

            foreach (var answer in operation.Responses.Values.OfType<OpenApiResponse>())
            {
                answer.Headers ??= new Dictionary<string, IOpenApiHeader>();
                foreach (var (name, _) in RateLimitHeaders)
                {
                    answer.Headers.TryAdd(name, new OpenApiHeaderReference(name, context.Document));
                }
            }
        }

        private static readonly (string Name, string Description)[] RateLimitHeaders =
        [
            (RateLimits.PolicyHeader, "The caller's allowance on this node: q requests at once, refilled over w seconds."),
            (RateLimits.StateHeader, "What is left of it: r requests now, the bucket full again in t seconds. Absent when the request was refused before it drew on the allowance (the per-address limit's 429, a body in another character set)."),
        ];

        /// <summary>Why a 403, as the recipient gate adds its own reasons to the scope check.</summary>
        private static string ForbiddenBecause(string path) =>
            path.StartsWith("api/v1/shared-cvs", StringComparison.Ordinal)
                ? "The token does not grant cv:read, the client is not a registered recipient, or the site is suspended (\"Recipient suspended\": it reads no CV, but may still poll and confirm its events)."
                : path.StartsWith("api/v1/events", StringComparison.Ordinal) || path.StartsWith("api/v1/erasures", StringComparison.Ordinal)
                    ? "The token does not grant cv:read, or the client is not a registered recipient."
                    : "The token does not grant the scope this operation needs.";

        private static void AddHeaders(OpenApiResponse response, params (string Name, string Description, JsonSchemaType Type)[] headers)
        {
            foreach (var (name, description, type) in headers)
            {
                response.Headers ??= new Dictionary<string, IOpenApiHeader>();
                response.Headers.TryAdd(name, new OpenApiHeader { Description = description, Schema = new OpenApiSchema { Type = type } });
            }
        }
    }

    /// <summary>
    /// The paging parameters as the API reads them: <c>limit</c> from 1 to the collection's page (100 for the shared CVs,
    /// whose items are whole documents; 500 elsewhere), that page by default; <c>cursor</c> the previous page's nextCursor.
    /// </summary>
    private sealed class PageParameters : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            var max = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<PageLimit>().FirstOrDefault()?.Max ?? Cursors.MaxLimit;
            foreach (var parameter in operation.Parameters ?? [])
            {
                if (parameter is not OpenApiParameter { In: ParameterLocation.Query } query)
                {
                    continue;
                }

                if (query.Name == "limit" && query.Schema is OpenApiSchema schema)
                {
                    schema.Minimum = "1";
                    schema.Maximum = max.ToString(CultureInfo.InvariantCulture);
                    schema.Default = System.Text.Json.Nodes.JsonValue.Create(Math.Min(Cursors.DefaultLimit, max));
                    query.Description = $"Items per page, 1 to {max}.";
                }
                else if (query.Name == "cursor")
                {
                    query.Description = "The nextCursor of the previous page (absent for the first). Go on while nextCursor is not null, even after a page with no items.";
                }
            }
        }
    }

    /// <summary>Endpoint metadata: the answer carries the resource's version as an ETag, and the request may send If-Match.</summary>
    public sealed record Versioned(bool TakesIfMatch = false);

    /// <summary>
    /// The headers the handlers read and write themselves (HttpRequest.Headers), which no parameter binding shows: without
    /// them a generated client could neither keep the ETag nor send If-Match.
    /// </summary>
    private sealed class VersionHeaders : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            if (context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<Versioned>().FirstOrDefault() is not { } versioned)
            {
                return;
            }

            foreach (var (status, response) in operation.Responses ?? [])
            {
                if (status.StartsWith('2') && response is OpenApiResponse answer)
                {
                    answer.Headers ??= new Dictionary<string, IOpenApiHeader>();
                    answer.Headers.TryAdd("ETag", new OpenApiHeader
                    {
                        Description = "The version this answer holds; send it back in If-Match to change only that version.",
                        Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                    });
                }
            }

            if (versioned.TakesIfMatch)
            {
                operation.Parameters ??= [];
                operation.Parameters.Add(new OpenApiParameter
                {
                    Name = "If-Match",
                    In = ParameterLocation.Header,
                    Description = "An ETag from an earlier answer (or *): the change is made only if the CV is still that version, else 412.",
                    Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                });
            }
        }
    }

    /// <summary>
    /// Each operation asks for the scope its endpoint's policy is named after (policies are named by scope), not for all of
    /// them: one requirement lists scopes that are all needed, so a global one would make clients ask for every scope.
    /// </summary>
    private sealed class ScopeRequirements : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            var scopes = context.ApiDescription.ActionDescriptor.EndpointMetadata
                .OfType<Microsoft.AspNetCore.Authorization.IAuthorizeData>()
                .Select(a => a.Policy)
                .Where(policy => policy is not null && ApiScopes.Api.Contains(policy))
                .Distinct()
                .ToList();
            if (scopes.Count == 0)
            {
                return;
            }

            // Alternatives (any one scope admits) are separate requirements.
            operation.Security = [.. scopes.Select(scope => new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference(SchemeId, context.Document)] = [scope!],
            })];
        }
    }

    /// <summary>
    /// Requests and responses are records: a constructor parameter without a default must be sent (the API binds with
    /// RespectRequiredConstructorParameters) and is always answered, so the contract lists it as required.
    /// </summary>
    private sealed class ConstructorParameters : ISchemaFilter
    {
        public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
        {
            if (schema is not OpenApiSchema target || target.Properties is not { Count: > 0 } properties
                || context.Type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault() is not { } constructor)
            {
                return;
            }

            foreach (var parameter in constructor.GetParameters().Where(p => !p.HasDefaultValue && p.Name is not null))
            {
                var name = System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(parameter.Name!);
                if (properties.ContainsKey(name))
                {
                    target.Required ??= new HashSet<string>();
                    target.Required.Add(name);
                }
            }
        }
    }

    /// <summary>
    /// What the compiler knows (nullable reference types are on): a member declared <c>string</c>, not <c>string?</c>, is
    /// never null, and a generated client must not be told it may be. Swashbuckle's own option left every string nullable
    /// with the serializer's contract resolver this API uses.
    /// </summary>
    private sealed class NonNullableMembers : ISchemaFilter
    {
        public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
        {
            if (schema is not OpenApiSchema target || target.Properties is not { Count: > 0 } properties)
            {
                return;
            }

            var nullability = new System.Reflection.NullabilityInfoContext();
            foreach (var property in context.Type.GetProperties())
            {
                var name = property.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonPropertyNameAttribute), true)
                    .OfType<System.Text.Json.Serialization.JsonPropertyNameAttribute>().FirstOrDefault()?.Name
                    ?? System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(property.Name);
                if (properties.TryGetValue(name, out var member) && member is OpenApiSchema { Type: { } type } memberSchema
                    && Nullable.GetUnderlyingType(property.PropertyType) is null
                    && (property.PropertyType.IsValueType || nullability.Create(property).ReadState == System.Reflection.NullabilityState.NotNull))
                {
                    memberSchema.Type = type & ~JsonSchemaType.Null;
                }
                else if (member is OpenApiSchemaReference reference && !property.PropertyType.IsValueType
                    && nullability.Create(property).ReadState == System.Reflection.NullabilityState.Nullable)
                {
                    // A reference cannot say null by itself: an object member the API may send as null says so around it.
                    properties[name] = new OpenApiSchema { AllOf = [reference], Type = JsonSchemaType.Null };
                }
            }
        }
    }

    /// <summary>
    /// Every URL the API takes is held to <see cref="RequestErrors.MaxUrlLength"/> (and none it sends is longer). Said here,
    /// not with [MaxLength] on the properties: that attribute cannot validate a Uri, and would throw if validation ran.
    /// </summary>
    private sealed class UrlLengths : ISchemaFilter
    {
        public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
        {
            if (schema is OpenApiSchema target && context.Type == typeof(Uri))
            {
                target.MaxLength = RequestErrors.MaxUrlLength;
            }
        }
    }

    /// <summary>
    /// What a site must get right outside the API's own responses: the closed sets it branches on (an event's kind and
    /// cause, a feed item's kind), the Security Event Token it is pushed or polls (header, claims, the event's members), and
    /// the push its endpoint answers (as <c>x-webhooks</c>: the document is OpenAPI 3.0). A client generated from the
    /// document then has a model for the one thing it must never get wrong, and an enum that a new cause would change.
    /// The values are read from the code's own constants, so the document cannot name a cause the gateway never sends.
    /// </summary>
    private sealed class EventDocuments : ISchemaFilter, IDocumentFilter
    {
        private static readonly string[] ErasureCauseValues =
            [ErasureCauses.ConsentRevoked, ErasureCauses.ConsentExpired, ErasureCauses.CvOffline, ErasureCauses.SubjectErased, ErasureCauses.RecipientSuspended];

        public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
        {
            if (schema is not OpenApiSchema { Properties: { } properties })
            {
                return;
            }

            if (context.Type == typeof(OpenEvent) || context.Type == typeof(ConfirmationResponse))
            {
                properties["kind"] = new OpenApiSchemaReference("EventKind");
                properties["cause"] = new OpenApiSchemaReference("EventCause");
            }
            else if (context.Type == typeof(Exchange.SharedCvItem))
            {
                properties["kind"] = new OpenApiSchemaReference("FeedItemKind");
                // Only a withdrawal has a cause; a reference cannot say null by itself.
                properties["cause"] = new OpenApiSchema { AllOf = [new OpenApiSchemaReference("ErasureCause")], Type = JsonSchemaType.Null };
            }
            else if (context.Type == typeof(PollResponse) && properties.TryGetValue("sets", out var sets) && sets is OpenApiSchema map)
            {
                map.Description = "The SETs due, by jti: each a compact JWS (typ secevent+jwt, ES256) whose header is SecurityEventTokenHeader and whose claims are SecurityEventToken.";
            }
        }

        public void Apply(OpenApiDocument document, DocumentFilterContext context)
        {
            var schemas = document.Components!.Schemas!;
            schemas["EventKind"] = Enumeration("The kind of event, the last segment of its URI in the SET's events member.", EventKinds.ErasureRequired, EventKinds.CvUpdated);
            schemas["ErasureCause"] = Enumeration("Why a site must delete its copy.", ErasureCauseValues);
            schemas["EventCause"] = Enumeration("An erasure's cause, or cv-updated for an update.", [.. ErasureCauseValues, "cv-updated"]);
            schemas["FeedItemKind"] = Enumeration("A CV to store, or a withdrawal: delete the copy of that id.", "cv", "withdrawal");
            schemas["SecurityEventTokenHeader"] = Object("The JWS header of a SET. Verify the signature with the key of this kid in /.well-known/jwks.",
                ("alg", Enumeration(null, "ES256"), true), ("typ", Enumeration(null, "secevent+jwt"), true), ("kid", Text(null), true));
            schemas["EventSubject"] = Object("The CV, by the id the site knows it by (its pairwise id).",
                ("format", Enumeration(null, "opaque"), true), ("id", Text("The site's id for the CV, as the feed gave it."), true));
            schemas["EventPayload"] = Object("The one member of events.",
                ("subject", new OpenApiSchemaReference("EventSubject"), true),
                ("cause", new OpenApiSchemaReference("EventCause"), true),
                ("confirm_before", Seconds("When the site's confirmation (POST /api/v1/erasures/{jti}/confirmation) is due: 72 hours after the change, rounded up to the whole hour."), true));
            var events = Object("Exactly one member, named by the event's URI.",
                (EventKinds.UriPrefix + EventKinds.ErasureRequired, new OpenApiSchemaReference("EventPayload"), false),
                (EventKinds.UriPrefix + EventKinds.CvUpdated, new OpenApiSchemaReference("EventPayload"), false));
            events.MinProperties = 1;
            events.MaxProperties = 1;
            schemas["SecurityEventToken"] = Object("The claims of a Security Event Token (RFC 8417) the gateway sends a site, pushed (RFC 8935) or polled (RFC 8936).",
                ("iss", Text("The gateway's issuer, an absolute URI with its trailing slash."), true),
                ("aud", Text("The site's client id."), true),
                ("jti", new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid", Description = "The event's id: acknowledge, and confirm, by it." }, true),
                ("iat", Seconds("When this copy was signed."), true),
                ("toe", Seconds("The UTC midnight of the day the change happened."), true),
                ("txn", Text("A keyed hash of the sharing episode, shared by its events."), true),
                ("events", events, true));
            schemas["PushError"] = Object("A receiver's RFC 8935 error answer (400): err is kept on the event; description is not.",
                ("err", Text("An RFC 8935 error code: invalid_request, invalid_key, invalid_issuer, invalid_audience, authentication_failed or access_denied."), true),
                ("description", Text(null), false));

            document.Extensions ??= new Dictionary<string, IOpenApiExtension>();
            document.Extensions["x-webhooks"] = new JsonNodeExtension(System.Text.Json.Nodes.JsonNode.Parse("""
                {
                  "securityEventPush": {
                    "post": {
                      "summary": "A SET pushed to the site's registered endpoint (RFC 8935)",
                      "description": "Sent without an Authorization header: trust the signature, iss and aud. Store the jti, then answer 202; any other answer is retried with the same jti. Redirects are not followed. Retry-After on a 429 or 503 holds the whole site, as a floor, at most a day.",
                      "requestBody": {
                        "required": true,
                        "content": { "application/secevent+jwt": { "schema": { "type": "string", "description": "A compact JWS: header SecurityEventTokenHeader, claims SecurityEventToken." } } }
                      },
                      "responses": {
                        "202": { "description": "Stored: the SET is acknowledged and not sent again." },
                        "400": {
                          "description": "The SET was refused: retried on the back-off; an err about the receiver's set-up (invalid_issuer, invalid_audience, invalid_key, authentication_failed, access_denied) holds all the site's events with it.",
                          "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PushError" } } }
                        },
                        "429": { "description": "Busy: the site is held until Retry-After." },
                        "503": { "description": "Unavailable: the site is held until Retry-After." }
                      }
                    }
                  }
                }
                """)!);
        }

        private static OpenApiSchema Enumeration(string? description, params string[] values) => new()
        {
            Type = JsonSchemaType.String,
            Description = description,
            Enum = [.. values.Select(v => (System.Text.Json.Nodes.JsonNode)System.Text.Json.Nodes.JsonValue.Create(v))],
        };

        private static OpenApiSchema Text(string? description) => new() { Type = JsonSchemaType.String, Description = description };

        private static OpenApiSchema Seconds(string description) => new() { Type = JsonSchemaType.Integer, Format = "int64", Description = "NumericDate (seconds since 1970). " + description };

        private static OpenApiSchema Object(string description, params (string Name, IOpenApiSchema Schema, bool Required)[] members) => new()
        {
            Type = JsonSchemaType.Object,
            Description = description,
            Properties = members.ToDictionary(m => m.Name, m => m.Schema),
            Required = members.Where(m => m.Required).Select(m => m.Name).ToHashSet(),
        };
    }

    public static WebApplication UseGatewayOpenApi(this WebApplication app)
    {
        app.UseSwagger();
        app.UseSwaggerUI(options =>
        {
            options.SwaggerEndpoint($"/swagger/{DocumentName}/swagger.json", "ExchangeGateway v1");
            options.DocumentTitle = "ExchangeGateway API";
            options.OAuthClientId(ClientRegistrations.SwaggerClientId);
            options.OAuthUsePkce();
            options.OAuthScopes(ApiScopes.CvManage);
        });
        return app;
    }
}
