"""What the generated office talks to: the vocabulary of made-up names, the real popular sites,
trackers and apps, and each kind of device's background (period, jitter, TTL).

Kept apart from generate.py so the generator reads as behaviour, and this as data. Periods are
the ones the real software uses where it is known (FCM's 28 min heartbeat, Windows telemetry,
Apple's push couriers), plausible ones elsewhere; every host here is asked by many devices or
since day 0, so none of it is a case.
"""

from __future__ import annotations

import string

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------
_WORDS = (
    "cloud sync data media stream news shop store pay bank login account auth portal web host "
    "service online digital smart fast global link track stat metric click tag pixel push notify "
    "chat live video music game play trade market deal best top pro hub lab zone point base core "
    "edge node gate safe guard check scan health care travel hotel fly car auto home house garden "
    "food pizza coffee sport fit run bike photo pic view look find search map geo city metro north "
    "south east west alpha beta nova star sun moon sky blue red green river stone forest lake "
    "bright clear simple open next first true good easy quick prime direct smart real local urban "
    "craft design studio works group partners labs systems solutions networks tech soft ware apps "
    "box kit deck flow stack wave pulse spark bloom leaf seed root field farm wood iron steel gold "
    "silver paper ink pen book read write learn school class team work office desk task plan "
    "note docs form survey event ticket venue sound radio film movie show daily weekly times post "
    "press journal report review guide tips help support talk forum social friend family kids pet "
    "dog cat bird fish wine beer tea bake cook chef kitchen table chair bed sleep dream mind body "
    "yoga dance art color pixel frame lens focus bold brave calm wild free fresh pure")
WORDS = sorted(set(_WORDS.split()))
SYLLABLES = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"] + ["ka", "lo", "ri", "xa"]
TLDS = (("com", 52), ("net", 8), ("org", 7), ("io", 4), ("de", 6), ("co.uk", 4), ("fr", 3),
        ("nl", 2), ("co", 2), ("app", 1), ("eu", 2), ("ch", 1), ("it", 2), ("es", 2),
        ("com.au", 1), ("se", 1), ("info", 1), ("ai", 1), ("dev", 1), ("be", 1))
ALNUM = string.ascii_lowercase + string.digits
B32 = "abcdefghijklmnopqrstuvwxyz234567"

# Real, popular sites: what a visit resolves (the page's own host first).
REAL_SITES = (
    "www.google.com apis.google.com ogs.google.com accounts.google.com",
    "mail.google.com contacts.google.com", "www.youtube.com m.youtube.com i.ytimg.com",
    "www.microsoft.com c.s-microsoft.com", "www.office.com portal.office.com",
    "en.wikipedia.org upload.wikimedia.org", "www.amazon.com images-eu.ssl-images-amazon.com",
    "www.linkedin.com static.licdn.com media.licdn.com", "www.bing.com th.bing.com",
    "github.com github.githubassets.com avatars.githubusercontent.com",
    "www.reddit.com styles.redditmedia.com preview.redd.it",
    "stackoverflow.com cdn.sstatic.net", "x.com abs.twimg.com pbs.twimg.com",
    "www.facebook.com static.xx.fbcdn.net scontent.xx.fbcdn.net",
    "www.instagram.com static.cdninstagram.com", "zoom.us us02web.zoom.us st1.zoom.us",
    "app.slack.com a.slack-edge.com", "acme.atlassian.net id.atlassian.com",
    "acme.my.salesforce.com login.salesforce.com", "www.netflix.com assets.nflxext.com",
    "www.apple.com store.storeimg.com", "www.dropbox.com cfl.dropboxstatic.com",
    "www.yahoo.com s.yimg.com", "www.bbc.co.uk static.files.bbci.co.uk",
    "www.theguardian.com assets.guim.co.uk i.guim.co.uk", "www.nytimes.com static01.nyt.com",
    "open.spotify.com i.scdn.co", "www.adobe.com use.typekit.net assets.adobedtm.com",
    "medium.com cdn-client.medium.com", "www.notion.so msgstore.www.notion.so",
    "www.figma.com static.figma.com", "www.canva.com static.canva.com",
    "www.booking.com cf.bstatic.com", "www.airbnb.com a0.muscache.com",
    "www.paypal.com www.paypalobjects.com", "www.ebay.com ir.ebaystatic.com",
    "wetransfer.com cdn.wetransfer.com", "gitlab.com assets.gitlab-static.net",
    "hub.docker.com www.docker.com", "www.npmjs.com static-production.npmjs.com",
    "www.python.org docs.python.org", "dashboard.stripe.com js.stripe.com m.stripe.network",
    "www.cloudflare.com dash.cloudflare.com", "chatgpt.com cdn.oaistatic.com",
    "www.deepl.com static.deepl.com", "weather.com s.w-x.co", "www.imdb.com m.media-amazon.com",
    "www.twitch.tv static.twitchcdn.net gql.twitch.tv", "www.pinterest.com i.pinimg.com",
    "duckduckgo.com improving.duckduckgo.com", "www.spiegel.de cdn.prod.www.spiegel.de",
    "www.lemonde.fr www.lemonde.fr", "www.heise.de heise.cloudimg.io",
)

_TRACKERS = """
google-analytics.com:www googletagmanager.com:www doubleclick.net:stats.g,securepubads.g
googlesyndication.com:pagead2 facebook.net:connect hotjar.com:static,script clarity.ms:www
criteo.com:static criteo.net:dis adnxs.com:ib rubiconproject.com:fastlane pubmatic.com:ads
scorecardresearch.com:sb quantserve.com:secure taboola.com:cdn outbrain.com:widgets
amazon-adsystem.com:aax,c bing.com:bat licdn.com:snap ads-twitter.com:static
segment.com:cdn,api mixpanel.com:api nr-data.net:bam cookielaw.org:cdn cookiebot.com:consent
demdex.net:dpm omtrdc.net:acme.sc adsrvr.org:match casalemedia.com:dsum openx.net:u
3lift.com:eb2 bidswitch.net:x smartadserver.com:ced teads.tv:a moatads.com:z
doubleverify.com:cdn adsafeprotected.com:pixel chartbeat.com:static optimizely.com:cdn
cloudflareinsights.com:static sentry-cdn.com:browser intercom.io:widget,api-iam
hubspot.com:js,forms hs-analytics.net:js branch.io:api2 onesignal.com:cdn,api
"""
TRACKERS_REAL = _TRACKERS.split()

SHARED_LIBS = ("fonts.googleapis.com", "fonts.gstatic.com", "ajax.googleapis.com",
               "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "unpkg.com", "code.jquery.com",
               "use.fontawesome.com", "www.gstatic.com", "maps.googleapis.com",
               "www.recaptcha.net", "js.stripe.com", "player.vimeo.com", "www.youtube.com",
               "i.ytimg.com")

PHONE_SDKS = ("firebaselogging-pa.googleapis.com", "app-measurement.com",
              "firebase-settings.crashlytics.com", "graph.facebook.com", "api2.branch.io",
              "app.adjust.com", "t.appsflyer.com", "o123456.ingest.sentry.io",
              "api.onesignal.com", "api.mixpanel.com", "sdk.iad-01.braze.com",
              "api.revenuecat.com", "inapps.appsflyersdk.com",
              "firebaseinstallations.googleapis.com",
              "device-provisioning.googleapis.com", "api.amplitude.com")

REAL_APPS = (
    "g.whatsapp.net mmg.whatsapp.net static.whatsapp.net", "i.instagram.com graph.instagram.com",
    "spclient.wg.spotify.com apresolve.spotify.com audio-ak-spotify-com.akamaized.net",
    "venus.web.telegram.org", "chat.signal.org cdn.signal.org", "cn-geo1.uber.com m.uber.com",
    "ichnaea.netflix.com api-global.netflix.com", "teams.microsoft.com",
    "outlook.office.com", "wss-primary.slack.com", "us02web.zoom.us", "mail.google.com",
    "youtubei.googleapis.com", "iphone-xml.booking.com", "ios-api.duolingo.com",
    "cdn-1.strava.com", "gql.reddit.com oauth.reddit.com",
    "api16-normal-c-useast1a.tiktokv.com log16-normal-c-useast1a.tiktokv.com",
    "app.snapchat.com aws.api.snapchat.com", "api.pinterest.com", "gql.twitch.tv",
)

# Operating-system and vendor background: (host, period_seconds, jitter_fraction, ttl, when).
# when: "on" (device powered and on the network), "active" (user at it), "daily" (once a day).
BACKGROUND = {
    "win": (
        ("v10.events.data.microsoft.com", 1800, 0.35, 300, "on"),
        ("settings-win.data.microsoft.com", 3600, 0.10, 3600, "on"),
        ("slscr.update.microsoft.com", 4 * 3600, 0.25, 3600, "on"),
        ("fe3cr.delivery.mp.microsoft.com", 8 * 3600, 0.2, 3600, "on"),
        ("ctldl.windowsupdate.com", 86400, 0.0, 3600, "daily"),
        ("login.microsoftonline.com", 3600, 0.05, 3600, "on"),
        ("outlook.office365.com", 900, 0.2, 300, "active"),
        ("wdcp.microsoft.com", 3600, 0.3, 300, "on"),
        ("smartscreen.microsoft.com", 1200, 0.6, 300, "active"),
        ("arc.msn.com", 6 * 3600, 0.3, 3600, "on"),
        ("edge.microsoft.com", 3600, 0.3, 600, "active"),
        ("checkin.falcon-edr.io", 900, 0.005, 60, "on"),       # EDR agent: strict 15 min beat
        ("licensing.mp.microsoft.com", 12 * 3600, 0.1, 3600, "on"),
        ("time.windows.com", 86400, 0.0, 3600, "daily"),
        ("client.wns.windows.com", 3600, 0.1, 300, "on"),
    ),
    "mac": (
        ("gateway.icloud.com", 3600, 0.4, 300, "on"),
        ("xp.apple.com", 3600, 0.2, 600, "on"),
        ("mesu.apple.com", 86400, 0.0, 3600, "daily"),
        ("swscan.apple.com", 86400, 0.0, 3600, "daily"),
        ("time.apple.com", 3600, 0.02, 600, "on"),
        ("ocsp2.apple.com", 1200, 0.5, 300, "active"),
        ("api.apple-cloudkit.com", 2400, 0.4, 300, "on"),
        ("configuration.apple.com", 6 * 3600, 0.2, 3600, "on"),
        ("init.itunes.apple.com", 6 * 3600, 0.3, 3600, "active"),
        ("checkin.falcon-edr.io", 900, 0.005, 60, "on"),
        ("gsa.apple.com", 4 * 3600, 0.3, 3600, "on"),
        ("keyvalueservice.icloud.com", 3600, 0.3, 600, "on"),
    ),
    "ios": (
        ("gateway.icloud.com", 2400, 0.4, 300, "on"),
        ("gsp-ssl.ls.apple.com", 3600, 0.5, 300, "on"),
        ("xp.apple.com", 3600, 0.3, 600, "on"),
        ("mesu.apple.com", 86400, 0.0, 3600, "daily"),
        ("keyvalueservice.icloud.com", 3600, 0.3, 600, "on"),
        ("time.apple.com", 3600, 0.05, 600, "on"),
        ("weather-data.apple.com", 3600, 0.2, 600, "on"),
        ("bag.itunes.apple.com", 4 * 3600, 0.3, 3600, "on"),
        ("identity.ess.apple.com", 3600, 0.3, 300, "on"),
        ("captive.apple.com", 86400, 0.0, 60, "daily"),
    ),
    "android": (
        ("connectivitycheck.gstatic.com", 1800, 0.3, 300, "on"),
        ("mtalk.google.com", 1680, 0.05, 300, "on"),          # FCM: a 28 min heartbeat
        ("android.clients.google.com", 3600, 0.3, 300, "on"),
        ("play.googleapis.com", 4 * 3600, 0.3, 600, "on"),
        ("www.googleapis.com", 1800, 0.5, 300, "on"),
        ("time.android.com", 3600, 0.05, 600, "on"),
        ("android.googleapis.com", 2400, 0.3, 300, "on"),
        ("clients4.google.com", 3600, 0.4, 300, "on"),
        ("ssl.gstatic.com", 3600, 0.5, 300, "active"),
    ),
    "server": (
        ("deb.debian.org", 6 * 3600, 0.01, 300, "on"),
        ("security.debian.org", 6 * 3600, 0.01, 300, "on"),
        ("ntp.ubuntu.com", 1024, 0.01, 300, "on"),
        ("api.datadoghq.eu", 600, 0.02, 600, "on"),            # monitoring agent, every 10 min
        ("intake.logs.datadoghq.eu", 1200, 0.02, 600, "on"),
        ("api.github.com", 3600, 0.0, 60, "on"),
        ("registry-1.docker.io", 4 * 3600, 0.1, 60, "on"),
        ("s3.eu-west-1.amazonaws.com", 900, 0.05, 60, "on"),
    ),
}

# IoT vendors: (kind, registrable, hosts, period, jitter, unique). unique: one device only.
IOT_VENDORS = (
    ("camera", "hik-connect.com", ("litedev.hik-connect.com", "alarm.hik-connect.com"), 600, 0.01),
    ("camera", "easy4ipcloud.com", ("p2p.easy4ipcloud.com", "config.easy4ipcloud.com"), 600,
     0.02),
    ("camera", "reolink.com", ("p2p.reolink.com", "pushx.reolink.com"), 900, 0.02),
    ("tv", "samsungcloudsolution.com", ("cdn.samsungcloudsolution.com",
                                        "lcprd1.samsungcloudsolution.net"), 1800, 0.2),
    ("tv", "lgtvsdp.com", ("eic.lgtvsdp.com", "de.lgtvsdp.com"), 1800, 0.2),
    ("room", "zoom.us", ("zoomrooms.zoom.us", "us01cl.zoom.us"), 600, 0.05),
    ("room", "plcm.vc", ("poly.plcm.vc", "lens.plcm.vc"), 600, 0.02),
    ("sensor", "tuyaeu.com", ("a1.tuyaeu.com", "m1.tuyaeu.com"), 600, 0.01),
    ("sensor", "nest.com", ("frontdoor.nest.com", "transport01.nest.com"), 900, 0.1),
    ("sensor", "ecobee.com", ("api.ecobee.com",), 600, 0.05),
)
# Lone devices, each the only one of its vendor here: a legitimate rare, regular beacon.
IOT_UNIQUE = (
    ("coffee", "brewlink-cloud.com", ("api.brewlink-cloud.com",), 600, 0.01),
    ("charger", "chargegrid.io", ("ocpp.chargegrid.io",), 300, 0.005),
    ("inverter", "solaredge.com", ("monitoring.solaredge.com", "prodssl.solaredge.com"), 900,
     0.01),
    ("ups", "apc-smartconnect.com", ("gw.apc-smartconnect.com",), 3600, 0.001),
    ("door", "doorcloud-access.net", ("mqtt.doorcloud-access.net",), 120, 0.02),
    ("aquarium", "reefbeat.io", ("telemetry.reefbeat.io",), 1800, 0.01),
    ("vending", "vendmetrics.com", ("dex.vendmetrics.com",), 3600, 0.01),
)
PRINTER_VENDORS = (
    ("hpeprint.com", ("xmpp008.hpeprint.com", "chat.hpeprint.com", "h10141.www1.hp.com"), 3600),
    ("epsonconnect.com", ("m2m.epsonconnect.com", "www.epsonconnect.com"), 900),
    ("brother.com", ("bcs.brother.com",), 21600),
    ("canon.com", ("cr.canon.com",), 7200),
)

# Made-up names for the injected cases (checked against the world and the shipped lists).
C2_POOL = ("weatherstatsfeed.com", "photometricsync.net", "mediastreamreport.com",
           "cloudmetricstats.net", "devicecarestats.com", "livetopographyfeed.net",
           "snapanalyticsdesk.com", "urbanweathernotes.com")
TUNNEL_POOL = ("cdn-telemetrysync.net", "static-mirrorcache.com", "api-healthreport.net")
BEACON_POOL = ("firmware-checkin.net", "camfleet-status.com", "ipcam-timesync.net")
