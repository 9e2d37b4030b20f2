//! Creating, reading and searching products, on every configured backend.

mod support;

use entity::{inventory, products};
use mercado_testkit::{TestDb, backend_tests};
use sea_orm::{EntityTrait, PaginatorTrait};
use service::{
    ServiceError,
    domain::products::{ProductQuery, ProductSort, SortOrder},
    ops::products::{create_product, get_product, search_products},
};
use support::*;

/// The names a search returns, in order.
async fn names(db: &TestDb, query: ProductQuery) -> anyhow::Result<Vec<String>> {
    let page = search_products(&db.conn, query).await?;
    Ok(page.products.into_iter().map(|p| p.name).collect())
}

fn containing(q: &str) -> ProductQuery {
    ProductQuery {
        q: Some(q.to_owned()),
        sort: ProductSort::Name,
        order: SortOrder::Asc,
        ..ProductQuery::default()
    }
}

backend_tests! {
    async fn a_created_product_is_read_back_with_its_stock_and_seller(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;

        let created = create_product(
            &db.conn,
            seller,
            new_product("MUG-1", "Mug 😀", "12.5", 40),
        )
        .await?;

        assert_eq!((created.sku.as_str(), created.name.as_str()), ("MUG-1", "Mug 😀"));
        assert_eq!(created.price.to_string(), "12.50");
        assert_eq!((created.stock, created.seller_id), (40, seller));
        let read = get_product(&db.conn, created.id).await?;
        assert_eq!(read, created);
        Ok(())
    }

    async fn a_free_product_and_one_at_the_price_limit_are_accepted(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let free = create_product(&db.conn, seller, new_product("FREE", "Free", "0", 0)).await?;
        let dear = create_product(&db.conn, seller, new_product("DEAR", "Dear", "1000000.00", 1)).await?;
        assert_eq!(get_product(&db.conn, free.id).await?.price.to_string(), "0.00");
        assert_eq!(get_product(&db.conn, dear.id).await?.price.to_string(), "1000000.00");
        Ok(())
    }

    async fn a_price_over_the_limit_is_refused(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let mut new = new_product("X", "X", "1", 1);
        new.price = money("1000000.01");
        let result = create_product(&db.conn, seller, new).await;
        assert!(matches!(result, Err(ServiceError::Validation { field: "price", .. })), "{result:?}");
        Ok(())
    }

    async fn a_taken_sku_is_refused_and_leaves_no_product_or_stock_behind(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        create_product(&db.conn, seller, new_product("SKU-1", "First", "1", 1)).await?;

        let result = create_product(&db.conn, seller, new_product("SKU-1", "Second", "2", 2)).await;

        assert!(matches!(result, Err(ServiceError::SkuTaken)), "{result:?}");
        assert_eq!(products::Entity::find().count(&db.conn).await?, 1);
        assert_eq!(inventory::Entity::find().count(&db.conn).await?, 1);
        Ok(())
    }

    async fn a_product_of_an_unknown_seller_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let result = create_product(&db.conn, 4242, new_product("SKU-1", "First", "1", 1)).await;
        assert!(matches!(result, Err(ServiceError::NotFound { resource: "user" })), "{result:?}");
        Ok(())
    }

    async fn an_unknown_product_is_not_found(db: TestDb) -> anyhow::Result<()> {
        let result = get_product(&db.conn, 4242).await;
        assert!(matches!(result, Err(ServiceError::NotFound { resource: "product" })), "{result:?}");
        Ok(())
    }

    async fn search_finds_a_substring_of_the_name_ignoring_case(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        for (sku, name) in [("1", "Blue MUG"), ("2", "mug warmer"), ("3", "Teapot")] {
            create_product(&db.conn, seller, new_product(sku, name, "1", 1)).await?;
        }

        assert_eq!(names(&db, containing("Mug")).await?, ["Blue MUG", "mug warmer"]);
        assert_eq!(names(&db, containing("TEA")).await?, ["Teapot"]);
        assert_eq!(names(&db, containing("coffee")).await?, Vec::<String>::new());
        assert_eq!(names(&db, containing("")).await?.len(), 3);
        Ok(())
    }

    async fn percent_underscore_and_backslash_match_only_themselves(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let all = ["100% cotton", "1000 cotton", "a_b", "axb", r"back\slash", "backslash"];
        for (i, name) in all.iter().enumerate() {
            create_product(&db.conn, seller, new_product(&format!("S{i}"), name, "1", 1)).await?;
        }

        assert_eq!(names(&db, containing("%")).await?, ["100% cotton"]);
        assert_eq!(names(&db, containing("0%")).await?, ["100% cotton"]);
        assert_eq!(names(&db, containing("_")).await?, ["a_b"]);
        assert_eq!(names(&db, containing("a_")).await?, ["a_b"]);
        assert_eq!(names(&db, containing(r"\")).await?, [r"back\slash"]);
        assert_eq!(names(&db, containing(r"k\s")).await?, [r"back\slash"]);
        let page = search_products(&db.conn, containing("%")).await?;
        assert_eq!(page.total, 1);
        Ok(())
    }

    async fn a_search_for_an_emoji_an_accent_or_hostile_text_matches_only_names_holding_it(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let all = [
            "party 🎉", "smile 😀", "family 👩‍👩‍👧‍👦", "café", "cafe", "straße", "strasse",
            "tab\there", "it's", "x'); DROP TABLE products; --",
        ];
        for (i, name) in all.iter().enumerate() {
            create_product(&db.conn, seller, new_product(&format!("S{i}"), name, "1", 1)).await?;
        }

        // A case- or accent-insensitive collation would match more than one of each pair, and
        // MySQL's utf8mb4_general_ci weighs every emoji alike.
        assert_eq!(names(&db, containing("😀")).await?, ["smile 😀"]);
        assert_eq!(names(&db, containing("🎉")).await?, ["party 🎉"]);
        assert_eq!(names(&db, containing("👧")).await?, ["family 👩‍👩‍👧‍👦"]);
        assert_eq!(names(&db, containing("é")).await?, ["café"]);
        assert_eq!(names(&db, containing("cafe")).await?, ["cafe"]);
        assert_eq!(names(&db, containing("ß")).await?, ["straße"]);
        assert_eq!(names(&db, containing("ss")).await?, ["strasse"]);
        assert_eq!(names(&db, containing("\t")).await?, ["tab\there"]);
        assert_eq!(names(&db, containing("'s")).await?, ["it's"]);
        assert_eq!(names(&db, containing("'); DROP")).await?, ["x'); DROP TABLE products; --"]);
        assert_eq!(names(&db, containing("😀 ")).await?, Vec::<String>::new());
        assert_eq!(search_products(&db.conn, ProductQuery::default()).await?.total, all.len() as u64);
        Ok(())
    }

    async fn skus_that_differ_only_in_case_an_emoji_or_a_trailing_space_are_different(
        db: TestDb
    ) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        for sku in ["ab", "AB", "ab ", "😀", "🎉", "é", "e"] {
            create_product(&db.conn, seller, new_product(sku, "Thing", "1", 1)).await?;
        }

        let result = create_product(&db.conn, seller, new_product("ab ", "Again", "1", 1)).await;
        assert!(matches!(result, Err(ServiceError::SkuTaken)), "{result:?}");
        assert_eq!(products::Entity::find().count(&db.conn).await?, 7);
        Ok(())
    }

    async fn search_sorts_by_the_chosen_column_with_the_id_as_tie_breaker(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        let mut ids = Vec::new();
        for (sku, name, price) in [("A", "b", "2"), ("B", "a", "1"), ("C", "c", "2"), ("D", "d", "1.5")] {
            ids.push(create_product(&db.conn, seller, new_product(sku, name, price, 1)).await?.id);
        }
        let by = |sort, order| ProductQuery { sort, order, ..ProductQuery::default() };

        assert_eq!(names(&db, by(ProductSort::Name, SortOrder::Asc)).await?, ["a", "b", "c", "d"]);
        assert_eq!(names(&db, by(ProductSort::Name, SortOrder::Desc)).await?, ["d", "c", "b", "a"]);
        // "b" and "c" cost the same: the id breaks the tie, in the same direction.
        assert_eq!(names(&db, by(ProductSort::Price, SortOrder::Asc)).await?, ["a", "d", "b", "c"]);
        assert_eq!(names(&db, by(ProductSort::Price, SortOrder::Desc)).await?, ["c", "b", "d", "a"]);
        let newest_first = search_products(&db.conn, ProductQuery::default()).await?;
        let newest_ids: Vec<i64> = newest_first.products.iter().map(|p| p.id).collect();
        assert_eq!(newest_ids, ids.iter().rev().copied().collect::<Vec<_>>());
        Ok(())
    }

    async fn pages_cover_every_match_once_and_report_the_total(db: TestDb) -> anyhow::Result<()> {
        let seller = user_with(&db.conn, "seller", "0").await?;
        for i in 0..7 {
            // Equal prices everywhere: only the tie-breaker keeps pages apart.
            create_product(&db.conn, seller, new_product(&format!("P{i}"), &format!("Item {i}"), "5", 1)).await?;
        }
        create_product(&db.conn, seller, new_product("OTHER", "Other", "5", 1)).await?;

        let mut seen = Vec::new();
        for offset in [0, 3, 6, 9] {
            let page = search_products(&db.conn, ProductQuery {
                q: Some("item".into()),
                sort: ProductSort::Price,
                order: SortOrder::Asc,
                limit: 3,
                offset,
            })
            .await?;
            assert_eq!(page.total, 7);
            seen.extend(page.products.into_iter().map(|p| p.name));
        }
        let expected: Vec<String> = (0..7).map(|i| format!("Item {i}")).collect();
        assert_eq!(seen, expected);
        Ok(())
    }

    async fn a_limit_outside_1_to_100_is_refused(db: TestDb) -> anyhow::Result<()> {
        for limit in [0, 101] {
            let result = search_products(&db.conn, ProductQuery { limit, ..ProductQuery::default() }).await;
            assert!(matches!(result, Err(ServiceError::Validation { field: "limit", .. })), "{result:?}");
        }
        Ok(())
    }
}
