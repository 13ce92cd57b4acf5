// Address classification and policy decisions, as units: nothing here
// connects anywhere (the addresses are only classified).
#include <doctest/doctest.h>

#include "common/ip_address.h"
#include "runner/net/policy.h"
#include "net_rule.h"

using namespace krunbox;
using namespace krunbox::net;

namespace {

std::string KindOf(const char* text) {
  const std::optional<IpAddress> a = IpAddress::Parse(text);
  REQUIRE(a);
  const std::optional<SpecialRange> r = ClassifyAddress(*a);
  return r ? r->kind : "public";
}

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

}  // namespace

TEST_CASE("special IPv4 ranges") {
  CHECK(KindOf("127.0.0.1") == "loopback");
  CHECK(KindOf("127.255.0.9") == "loopback");
  CHECK(KindOf("0.0.0.0") == "this-network");
  CHECK(KindOf("10.1.2.3") == "private");
  CHECK(KindOf("172.16.0.1") == "private");
  CHECK(KindOf("172.31.255.255") == "private");
  CHECK(KindOf("172.32.0.1") == "public");
  CHECK(KindOf("192.168.1.1") == "private");
  CHECK(KindOf("169.254.169.254") == "link-local");  // cloud metadata
  CHECK(KindOf("100.100.100.200") == "shared (CGNAT)");
  CHECK(KindOf("198.18.0.1") == "benchmarking");
  CHECK(KindOf("224.0.0.251") == "multicast");
  CHECK(KindOf("255.255.255.255") == "reserved");
  CHECK(KindOf("1.1.1.1") == "public");
  CHECK(KindOf("93.184.215.14") == "public");
}

TEST_CASE("special IPv6 ranges and IPv6 forms of IPv4 addresses") {
  CHECK(KindOf("::1") == "loopback");
  CHECK(KindOf("::") == "unspecified");
  CHECK(KindOf("fe80::1") == "link-local");
  CHECK(KindOf("fc00::1") == "private");
  CHECK(KindOf("fd00:ec2::254") == "private");  // a cloud metadata address
  CHECK(KindOf("ff02::1") == "multicast");
  CHECK(KindOf("2001:db8::1") == "documentation");
  CHECK(KindOf("2606:4700::1111") == "public");
  // IPv4-mapped: the same address as its IPv4 form.
  CHECK(KindOf("::ffff:127.0.0.1") == "loopback");
  CHECK(KindOf("::ffff:7f00:1") == "loopback");
  CHECK(KindOf("::ffff:169.254.169.254") == "link-local");
  CHECK(KindOf("::ffff:10.0.0.1") == "private");
  CHECK(KindOf("::ffff:1.1.1.1") == "public");
  CHECK(Ip("::ffff:127.0.0.1") == Ip("127.0.0.1"));
  // IPv4-compatible, NAT64 and 6to4 forms of special IPv4 addresses.
  CHECK(KindOf("::127.0.0.1") == "reserved");
  CHECK(KindOf("64:ff9b::127.0.0.1") == "loopback");
  CHECK(KindOf("64:ff9b::a9fe:a9fe") == "link-local");
  CHECK(KindOf("64:ff9b::1.1.1.1") == "public");
  CHECK(KindOf("2002:7f00:1::1") == "loopback");
  CHECK(KindOf("2002:c0a8:101::1") == "private");
}

TEST_CASE("the host's own addresses are special too") {
  const std::vector<IpAddress> own = {Ip("5.6.7.8"), Ip("2001:db8::7")};
  CHECK(std::string(ClassifyAddress(Ip("5.6.7.8"), own)->kind) == "the host's own address");
  CHECK(ClassifyAddress(Ip("5.6.7.8"), own)->block.ToString() == "5.6.7.8/32");
  CHECK(std::string(ClassifyAddress(Ip("2001:db8::7"), own)->kind) == "documentation");  // its range comes first
  CHECK(std::string(ClassifyAddress(Ip("127.0.0.1"), own)->kind) == "loopback");
  CHECK_FALSE(ClassifyAddress(Ip("5.6.7.9"), own));
}

TEST_CASE("prefixes") {
  CHECK(Cidr::Parse("203.0.113.0/24")->Contains(Ip("203.0.113.77")));
  CHECK_FALSE(Cidr::Parse("203.0.113.0/24")->Contains(Ip("203.0.114.1")));
  CHECK(Cidr::Parse("203.0.113.9/24")->ToString() == "203.0.113.0/24");
  CHECK(Cidr::Parse("2001:db8::/32")->Contains(Ip("2001:db8:1::5")));
  CHECK(Cidr::Parse("0.0.0.0/0")->Contains(Ip("8.8.4.4")));
  CHECK_FALSE(Cidr::Parse("0.0.0.0/0")->Contains(Ip("2001:db8::1")));
  CHECK(Cidr::Parse("127.0.0.1")->ToString() == "127.0.0.1/32");
  CHECK(Cidr::Parse("::ffff:10.0.0.0/104")->Contains(Ip("10.9.9.9")));
  CHECK(Cidr::Parse("127.0.0.0/8")->Covers(*Cidr::Parse("127.0.0.1")));
  CHECK_FALSE(Cidr::Parse("127.0.0.1")->Covers(*Cidr::Parse("127.0.0.0/8")));
  for (const char* bad : {"", "1.2.3", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4/08", "::/129", "example.com", "1.2.3.4/-1"})
    CHECK_FALSE(Cidr::Parse(bad));
}

TEST_CASE("host names") {
  CHECK(IsHostName("pypi.org"));
  CHECK(IsHostName("files.pythonhosted.org"));
  CHECK(IsHostName("_dmarc.example.com"));
  for (const char* bad : {"", ".", "a..b", "a.", "-.", "a b", "a/b", "x\x01y", "a:80"}) CHECK_FALSE(IsHostName(bad));
  CHECK_FALSE(IsHostName(std::string(64, 'a') + ".com"));
}

TEST_CASE("policy: names, suffixes, ports, deny wins") {
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Name, "pypi.org"), Rule(NetRule::Kind::Suffix, ".pythonhosted.org"),
             Rule(NetRule::Kind::Name, "example.com", 443), Rule(NetRule::Kind::Cidr, "1.1.1.0/24")};
  c.deny = {Rule(NetRule::Kind::Name, "bad.pythonhosted.org"), Rule(NetRule::Kind::Cidr, "1.1.1.1", 53)};
  Policy p(c);
  const IpAddress pub = Ip("151.101.0.223");
  CHECK(p.Decide("pypi.org", pub, 443, false).allowed);
  CHECK(p.Decide("files.pythonhosted.org", pub, 443, false).allowed);
  CHECK_FALSE(p.Decide("pythonhosted.org", pub, 443, false).allowed);  // subdomains only
  CHECK_FALSE(p.Decide("evilpythonhosted.org", pub, 443, false).allowed);
  CHECK(p.Decide("example.com", pub, 443, false).allowed);
  CHECK_FALSE(p.Decide("example.com", pub, 80, false).allowed);
  const Verdict denied = p.Decide("bad.pythonhosted.org", pub, 443, false);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.reason == "deny entry \"bad.pythonhosted.org\"");
  CHECK(p.Decide("", Ip("1.1.1.7"), 22, false).allowed);
  CHECK_FALSE(p.Decide("", Ip("1.1.1.1"), 53, false).allowed);
  CHECK(p.Decide("", Ip("1.1.1.1"), 443, false).allowed);
  CHECK(p.Decide("", Ip("1.1.2.1"), 443, false).reason == "no allow entry matches");
  // DNS answers only for names that may connect.
  CHECK(p.NameMayConnect("pypi.org"));
  CHECK(p.NameMayConnect("example.com"));
  CHECK(p.NameMayConnect("a.b.pythonhosted.org"));
  CHECK_FALSE(p.NameMayConnect("bad.pythonhosted.org"));
  CHECK_FALSE(p.NameMayConnect("example.org"));
}

TEST_CASE("policy: special addresses need an entry that names them") {
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Any, "*"), Rule(NetRule::Kind::Cidr, "0.0.0.0/0"), Rule(NetRule::Kind::Name, "api.test", 8080)};
  c.hosts["api.test"] = {Ip("127.0.0.1")};
  c.hosts["other.test"] = {Ip("127.0.0.1")};
  Policy p(c);
  // "*" and a prefix that merely spans them reach no special address...
  for (const char* a : {"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fe80::1", "0.0.0.0"}) {
    const Verdict v = p.Decide("", Ip(a), 80, false);
    CHECK_MESSAGE(!v.allowed, a);
    CHECK(v.reason.find("only an allow entry naming it") != std::string::npos);
  }
  // ...nor does a name that resolves there (DNS rebinding).
  CHECK_FALSE(p.Decide("rebind.example", Ip("127.0.0.1"), 80, false).allowed);
  CHECK(p.Decide("anything.example", Ip("1.1.1.1"), 80, false).allowed);
  // A name the user mapped in hosts and allowed by name does.
  CHECK(p.Decide("api.test", Ip("127.0.0.1"), 8080, true).allowed);
  CHECK_FALSE(p.Decide("api.test", Ip("127.0.0.1"), 8081, true).allowed);
  CHECK_FALSE(p.Decide("other.test", Ip("127.0.0.1"), 8080, true).allowed);  // mapped, but only "*" allows it

  NetworkConfig d;
  d.allow = {Rule(NetRule::Kind::Cidr, "127.0.0.1", 9000), Rule(NetRule::Kind::Cidr, "10.0.0.0/8")};
  Policy q(d);
  CHECK(q.Decide("", Ip("127.0.0.1"), 9000, false).allowed);
  CHECK_FALSE(q.Decide("", Ip("127.0.0.2"), 9000, false).allowed);
  CHECK(q.Decide("", Ip("10.2.3.4"), 22, false).allowed);
}

TEST_CASE("policy: the host's own addresses") {
  NetworkConfig c;
  c.allow = {Rule(NetRule::Kind::Any, "*"), Rule(NetRule::Kind::Cidr, "5.6.7.9")};
  Policy p(c);
  p.SetHostAddresses({Ip("5.6.7.8"), Ip("5.6.7.9"), Ip("127.0.0.1")});
  CHECK_FALSE(p.Decide("", Ip("5.6.7.8"), 80, false).allowed);
  CHECK(p.Decide("", Ip("5.6.7.9"), 80, false).allowed);  // named explicitly
  CHECK(p.Decide("", Ip("5.6.7.10"), 80, false).allowed);
  CHECK(p.Decide("", Ip("5.6.7.8"), 80, false).reason.find("the host's own address") != std::string::npos);
}
