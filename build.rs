//! Lets `mercado_testkit::backend_tests!` mark the PostgreSQL and MariaDB runs ignored when no
//! server is named, and the browser test when no chromedriver is (`TEST_CHROMEDRIVER`).
fn main() {
    println!("cargo::rerun-if-env-changed=TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=TEST_MYSQL_URL");
    println!("cargo::rustc-check-cfg=cfg(mercado_postgres)");
    println!("cargo::rustc-check-cfg=cfg(mercado_mysql)");
    println!("cargo::rerun-if-env-changed=TEST_CHROMEDRIVER");
    println!("cargo::rustc-check-cfg=cfg(mercado_chromedriver)");
    if std::env::var_os("TEST_CHROMEDRIVER").is_some_and(|path| !path.is_empty()) {
        println!("cargo::rustc-cfg=mercado_chromedriver");
    }
    if std::env::var_os("TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=mercado_postgres");
    }
    if std::env::var_os("TEST_MYSQL_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=mercado_mysql");
    }
}
